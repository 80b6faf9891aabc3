import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRegions } from '../../core/config/load-regions.js';
import { createLogger } from '../../core/logger.js';
import { closeRedis, connectRedis, redisEndpoint, type RedisClient } from '../../core/redis-connection.js';
import { CapacityGate, type AdmissionRequest, type CapacityGrant } from '../../gateway/capacity/capacity-gate.js';
import { CapacityMetrics } from '../../gateway/capacity/capacity-metrics.js';
import { RedisLedger } from '../../scheduler/capacity/redis-ledger.js';
import { ResilientLedger } from '../../scheduler/capacity/resilient-ledger.js';
import { Fleet } from '../../scheduler/fleet.js';
import { ExpectedCompletionPolicy } from '../../scheduler/placement/expected-completion.js';
import { eventually } from '../helpers/processes.js';
import { freePort, startRedisServer, type RedisServerProcess } from '../helpers/redis-topologies.js';

/**
 * A Redis that restarts with nothing (no persistence) under running requests: the ledger's
 * reservations come back from the gateways' own open leases, not after the requests end.
 */
const YAML = `
regions:
  - id: r
    residency: x
    clusters:
      - id: c
        nodes:
          - { id: n1, url: "http://127.0.0.1:1", engine: vllm, models: [m], capacity: { tokensPerSecond: 1000, maxSequences: 10 } }
`;
const dir = mkdtempSync(join(tmpdir(), 'sy-rebuild-'));
const log = createLogger({ level: 'silent', name: 'test' });
const cleanup: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

function gateway(redis: RedisClient): { gate: CapacityGate; req: () => AdmissionRequest } {
  const fleet = new Fleet(parseRegions(YAML));
  const ledger = new ResilientLedger(new RedisLedger({ redis, keyPrefix: 'rebuild:' }), log);
  const gate = new CapacityGate(
    fleet,
    ledger,
    new ExpectedCompletionPolicy({ horizonSeconds: 30, affinitySlack: 2 }),
    { queueMax: 100, syncIntervalMs: 50, candidates: 3, sessionMemory: 100 },
    new CapacityMetrics(new Registry(), fleet, 30),
    log,
  );
  cleanup.push(() => gate.stop());
  const req = (): AdmissionRequest => ({
    model: 'm', route: fleet.routeFrom('r'), costTokens: 100, workTokens: 100, exclude: undefined, priority: 'standard',
    tenant: 't', weight: 1, deadlineAt: Date.now() + 10_000, affinityKey: undefined, signal: new AbortController().signal,
  });
  return { gate, req };
}

describe('capacity ledger after Redis restarted empty', () => {
  it("is rebuilt from both gateways' running requests, and empties again when they end", async () => {
    const port = await freePort();
    let server: RedisServerProcess = await startRedisServer(dir, port);
    cleanup.push(() => server.kill());
    const endpoint = redisEndpoint(`redis://127.0.0.1:${port}`);
    const [c1, c2, probe] = [connectRedis(endpoint, 'state', undefined), connectRedis(endpoint, 'state', undefined), connectRedis(endpoint, 'probe', undefined, 'queue')];
    cleanup.push(() => Promise.all([c1, c2, probe].map((c) => closeRedis(c))).then(() => undefined));
    const ledger = new RedisLedger({ redis: probe, keyPrefix: 'rebuild:' });
    await eventually(async () => c1.status === 'ready' && c2.status === 'ready', 5000, 'connections');
    const gw1 = gateway(c1);
    const gw2 = gateway(c2);
    await Promise.all([gw1.gate.start(), gw2.gate.start()]);

    const running: CapacityGrant[] = [];
    for (let i = 0; i < 3; i++) running.push(await gw1.gate.acquire(gw1.req()));
    for (let i = 0; i < 2; i++) running.push(await gw2.gate.acquire(gw2.req()));
    expect(await ledger.snapshot()).toEqual([{ nodeId: 'n1', sequences: 5, tokens: 500 }]);

    await server.kill();
    server = await startRedisServer(dir, port); // no persistence: it starts with nothing
    expect(await ledger.snapshot()).toEqual([]);
    // Each gateway notices at its next sync that the ledger has less than it alone holds.
    await eventually(async () => JSON.stringify(await ledger.snapshot()) === JSON.stringify([{ nodeId: 'n1', sequences: 5, tokens: 500 }]), 10_000, 'the totals rebuilt');

    for (const g of running) g.release();
    await eventually(async () => (await ledger.snapshot()).every((t) => t.sequences === 0 && t.tokens === 0), 5000, 'every lease released');
  }, 30_000);
});
