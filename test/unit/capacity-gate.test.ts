import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { parseRegions } from '../../core/config/load-regions.js';
import { SwitchyardError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import { CapacityGate, type AdmissionRequest, type CapacityGrant } from '../../gateway/capacity/capacity-gate.js';
import { CapacityMetrics } from '../../gateway/capacity/capacity-metrics.js';
import { MemoryLedger } from '../../scheduler/capacity/memory-ledger.js';
import { Fleet } from '../../scheduler/fleet.js';
import { ExpectedCompletionPolicy } from '../../scheduler/placement/expected-completion.js';

/** The admission gate over the memory ledger: one node with two sequence slots. */
const YAML = `
regions:
  - id: r
    residency: x
    clusters:
      - id: c
        nodes:
          - { id: n1, url: "http://127.0.0.1:1", engine: vllm, models: [m], capacity: { tokensPerSecond: 1000, maxSequences: 2 } }
`;

const gates: CapacityGate[] = [];
afterEach(() => {
  for (const g of gates.splice(0)) g.stop();
});

function setup(queueMax = 100, ledger = new MemoryLedger(), now: () => number = Date.now) {
  const fleet = new Fleet(parseRegions(YAML));
  const gate = new CapacityGate(
    fleet,
    ledger,
    new ExpectedCompletionPolicy({ horizonSeconds: 30, affinitySlack: 2 }),
    { queueMax, syncIntervalMs: 10_000, candidates: 3, sessionMemory: 100 },
    new CapacityMetrics(new Registry(), fleet, 30),
    createLogger({ level: 'silent', name: 'test' }),
    now,
  );
  gates.push(gate);
  const req = (over: Partial<AdmissionRequest> = {}): AdmissionRequest => ({
    model: 'm', route: fleet.routeFrom('r'), costTokens: 100, workTokens: 100, exclude: undefined, priority: 'standard',
    tenant: 't', weight: 1, deadlineAt: Date.now() + 10_000, affinityKey: undefined, signal: new AbortController().signal, ...over,
  });
  return { fleet, gate, req };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('CapacityGate', () => {
  it('places at once while the node has slots, then queues; a release admits the next in line', async () => {
    const { gate, req } = setup();
    const a = await gate.acquire(req());
    const b = await gate.acquire(req());
    expect(a.waitedMs).toBe(0);
    const order: string[] = [];
    const c = gate.acquire(req({ tenant: 'x' })).then((g) => (order.push('c'), g));
    const d = gate.acquire(req({ tenant: 'x' })).then((g) => (order.push('d'), g));
    await tick();
    expect(gate.waiting).toBe(2);
    a.release();
    const gc = await c;
    expect(order).toEqual(['c']);
    b.release();
    await d;
    expect(order).toEqual(['c', 'd']);
    expect(gate.waiting).toBe(0);
    gc.release();
  });

  it('serves a higher priority class first, whatever the arrival order', async () => {
    const { gate, req } = setup();
    const held = [await gate.acquire(req()), await gate.acquire(req())];
    const order: string[] = [];
    const track = (name: string, p: Promise<CapacityGrant>) => p.then((g) => (order.push(name), g.release()));
    const all = [
      track('batch', gate.acquire(req({ priority: 'batch' }))),
      track('standard', gate.acquire(req({ priority: 'standard' }))),
      track('interactive', gate.acquire(req({ priority: 'interactive' }))),
    ];
    await tick();
    held[0]?.release();
    await Promise.all(all);
    expect(order).toEqual(['interactive', 'standard', 'batch']);
    held[1]?.release();
  });

  it('past its deadline a waiting request gets no_capacity with a Retry-After', async () => {
    const { gate, req } = setup();
    const held = [await gate.acquire(req()), await gate.acquire(req())];
    const err = await gate.acquire(req({ deadlineAt: Date.now() + 30 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchyardError);
    expect(err).toMatchObject({ code: 'no_capacity', status: 503 });
    expect((err as SwitchyardError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(gate.waiting).toBe(0);
    for (const h of held) h.release();
  });

  it('a full queue refuses at once; a client that goes away leaves the queue at once', async () => {
    const { gate, req } = setup(1);
    const held = [await gate.acquire(req()), await gate.acquire(req())];
    const abort = new AbortController();
    const waiting = gate.acquire(req({ signal: abort.signal }));
    await tick();
    await expect(gate.acquire(req())).rejects.toMatchObject({ code: 'no_capacity', message: expect.stringContaining('queue for this model is full') });
    abort.abort();
    await expect(waiting).rejects.toMatchObject({ status: 499 });
    expect(gate.waiting).toBe(0);
    for (const h of held) h.release();
  });

  it('no node serves the request: no_healthy_node at once, never a wait', async () => {
    const { fleet, gate, req } = setup();
    (fleet.nodes.get('n1') as { healthy: boolean }).healthy = false;
    await expect(gate.acquire(req())).rejects.toMatchObject({ code: 'no_healthy_node' });
  });

  it('a view that says "full" is checked against the ledger once it is older than a sync interval', async () => {
    // Two gateways (each its own fleet view) on one ledger; B's clock is driven by hand.
    const ledger = new MemoryLedger();
    let clock = Date.now();
    const a = setup(100, ledger);
    const b = setup(0, ledger, () => clock);
    const held = [await a.gate.acquire(a.req()), await a.gate.acquire(a.req())];
    // B learns that the node is full (its queue holds nobody, so it refuses).
    await expect(b.gate.acquire(b.req())).rejects.toMatchObject({ code: 'no_capacity' });
    for (const h of held) h.release();
    await tick();
    // Within the sync interval B trusts its view: still refused, the ledger is not asked.
    clock += 5_000;
    await expect(b.gate.acquire(b.req())).rejects.toMatchObject({ code: 'no_capacity' });
    // Past it, B reads the ledger before refusing and finds the slots A gave back.
    clock += 5_001;
    const granted = await b.gate.acquire(b.req());
    expect(granted.node.id).toBe('n1');
    expect(granted.waitedMs).toBe(0);
    granted.release();
  });
});
