import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRegions } from '../../core/config/load-regions.js';
import { createLogger } from '../../core/logger.js';
import { NodeHealth } from '../../gateway/upstream/node-health.js';
import { UpstreamPools } from '../../gateway/upstream/upstream-pools.js';
import { Fleet } from '../../scheduler/fleet.js';
import { regionsYaml } from '../helpers/processes.js';

/**
 * Active health checks against a real HTTP server standing in for a vLLM node's /health: rounds
 * are run by hand (the timer's period is far longer than the test), so each step is one probe.
 */
let status = 200;
let server: Server;
let port = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    res.statusCode = req.url === '/health' ? status : 404;
    res.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

function setup(healthFailures: number) {
  const fleet = new Fleet(parseRegions(regionsYaml([{ id: 'r', nodes: [{ id: 'n1', url: `http://127.0.0.1:${port}` }] }])));
  const pools = new UpstreamPools(fleet, { connectTimeoutMs: 1000, firstByteTimeoutMs: 1000, idleTimeoutMs: 1000 });
  const health = new NodeHealth(
    fleet,
    pools,
    { breakerFailures: 3, breakerCooldownMs: 60_000, healthIntervalMs: 600_000, healthFailures, connectTimeoutMs: 1000 },
    createLogger({ level: 'silent', name: 'test' }),
  );
  const node = fleet.nodes.get('n1');
  if (node === undefined) throw new Error('no node');
  return { node, health, close: () => (health.stop(), pools.close(0)) };
}

describe('active health checks', () => {
  it('a passing node is marked unhealthy only after healthFailures failed probes in a row; one pass restores it', async () => {
    status = 200;
    const { node, health, close } = setup(2);
    await health.start();
    expect(node.healthy).toBe(true);
    status = 503;
    await health.probeAll();
    expect(node.healthy).toBe(true); // one failed probe: not yet
    status = 200;
    await health.probeAll();
    status = 503;
    await health.probeAll();
    expect(node.healthy).toBe(true); // the pass in between reset the count
    await health.probeAll();
    expect(node.healthy).toBe(false);
    status = 200;
    await health.probeAll();
    expect(node.healthy).toBe(true);
    await close();
  });

  it('at start the first probe decides at once', async () => {
    status = 503;
    const { node, health, close } = setup(2);
    await health.start();
    expect(node.healthy).toBe(false);
    await close();
  });

  it('healthFailures 1 keeps the old behaviour: one failed probe marks the node unhealthy', async () => {
    status = 200;
    const { node, health, close } = setup(1);
    await health.start();
    status = 503;
    await health.probeAll();
    expect(node.healthy).toBe(false);
    await close();
  });
});
