import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.js';
import type { CapacityLedger, LedgerNode } from '../../scheduler/capacity/ledger.js';
import { MemoryLedger } from '../../scheduler/capacity/memory-ledger.js';
import { RedisLedger } from '../../scheduler/capacity/redis-ledger.js';
import { ResilientLedger } from '../../scheduler/capacity/resilient-ledger.js';
import { eventually } from '../helpers/processes.js';
import { redisBackends } from '../helpers/redis-topologies.js';
import { uniqueName } from '../helpers/services.js';

/** One contract, every implementation: the memory ledger and the Redis scripts agree. */
const root = `${uniqueName('sytest_ledger')}:`;
const backends = redisBackends(root);
beforeAll(() => backends.start(), 60_000);
afterAll(() => backends.stop());

/** Two handles on one ledger (two gateways); each call of `make` is a fresh ledger. */
type Make = (leaseTtlMs?: number) => [CapacityLedger, CapacityLedger];
const implementations: Array<[string, Make]> = [
  [
    'memory',
    (ttl) => {
      const l = new MemoryLedger(ttl);
      return [l, l];
    },
  ],
  ...backends.each.map(([name, redis]): [string, Make] => [
    `redis ${name}`,
    (ttl) => {
      const keyPrefix = `${root}${uniqueName('l')}:`;
      const opts = ttl === undefined ? {} : { leaseTtlMs: ttl };
      return [new RedisLedger({ redis: redis.connect(), keyPrefix, ...opts }), new RedisLedger({ redis: redis.connect(), keyPrefix, ...opts })];
    },
  ]),
];

const node = (id: string, maxSequences: number, tokenBudget: number): LedgerNode => ({ id, maxSequences, tokenBudget });
let ids = 0;
const lease = (): string => `lease-${++ids}`;

describe.each(implementations)('CapacityLedger contract: %s', (_name, make) => {
  it('reserves on the first candidate with a free sequence slot and reports every candidate', async () => {
    const [ledger] = make();
    const a = node('a', 2, 10_000);
    const b = node('b', 4, 10_000);
    expect(await ledger.reserve(lease(), 100, [a, b])).toEqual({ granted: 0, sequences: [1, 0], tokens: [100, 0] });
    expect(await ledger.reserve(lease(), 50, [a, b])).toEqual({ granted: 0, sequences: [2, 0], tokens: [150, 0] });
    expect(await ledger.reserve(lease(), 70, [a, b])).toEqual({ granted: 1, sequences: [2, 1], tokens: [150, 70] });
    expect(await ledger.reserve(lease(), 70, [a])).toEqual({ granted: -1, sequences: [2], tokens: [150] });
  });

  it('keeps reserved tokens within the token budget, but an idle node takes any single request', async () => {
    const [ledger] = make();
    const a = node('a', 100, 1000);
    expect((await ledger.reserve(lease(), 5000, [a])).granted).toBe(0);
    expect((await ledger.reserve(lease(), 10, [a])).granted).toBe(-1);
    const [fresh] = make();
    expect((await fresh.reserve(lease(), 600, [a])).granted).toBe(0);
    expect((await fresh.reserve(lease(), 400, [a])).granted).toBe(0);
    expect((await fresh.reserve(lease(), 1, [a])).granted).toBe(-1);
  });

  it('releases exactly once: a second release of the same lease changes nothing', async () => {
    const [ledger] = make();
    const a = node('a', 4, 10_000);
    const l1 = lease();
    await ledger.reserve(l1, 100, [a]);
    await ledger.reserve(lease(), 30, [a]);
    expect(await ledger.release(l1)).toEqual({ nodeId: 'a', sequences: 1, tokens: 30 });
    expect(await ledger.release(l1)).toBeUndefined();
    expect(await ledger.release('never-taken')).toBeUndefined();
    expect(await ledger.snapshot()).toEqual([{ nodeId: 'a', sequences: 1, tokens: 30 }]);
  });

  it('reservations and releases made together are applied one after another, in order', async () => {
    // The Redis ledger sends the reservations (and the releases) of one event-loop turn as one script.
    const [ledger] = make();
    const a = node('a', 2, 1000);
    const b = node('b', 1, 1000);
    const [l1, l2, l3, l4] = [lease(), lease(), lease(), lease()];
    expect(await Promise.all([ledger.reserve(l1, 600, [a, b]), ledger.reserve(l2, 600, [a, b]), ledger.reserve(l3, 100, [b]), ledger.reserve(l4, 100, [a])])).toEqual([
      { granted: 0, sequences: [1, 0], tokens: [600, 0] },
      { granted: 1, sequences: [1, 1], tokens: [600, 600] },
      { granted: -1, sequences: [1], tokens: [600] },
      { granted: 0, sequences: [2], tokens: [700] },
    ]);
    expect(await Promise.all([ledger.release(l1), ledger.release(l1), ledger.release('never-taken'), ledger.release(l2)])).toEqual([
      { nodeId: 'a', sequences: 1, tokens: 100 },
      undefined,
      undefined,
      { nodeId: 'b', sequences: 0, tokens: 0 },
    ]);
    expect(await ledger.release(l4)).toEqual({ nodeId: 'a', sequences: 0, tokens: 0 });
  });

  it('two gateways reserving at once never over-commit a node', async () => {
    const [g1, g2] = make();
    const a = node('a', 10, 1_000_000);
    const b = node('b', 5, 1_000_000);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? g1 : g2).reserve(lease(), 10, [a, b])));
    expect(results.filter((r) => r.granted === 0)).toHaveLength(10);
    expect(results.filter((r) => r.granted === 1)).toHaveLength(5);
    for (const r of results) {
      expect(r.sequences[0]).toBeLessThanOrEqual(10);
      expect(r.sequences[1]).toBeLessThanOrEqual(5);
    }
    const totals = new Map((await g2.snapshot()).map((t) => [t.nodeId, t]));
    expect(totals.get('a')).toEqual({ nodeId: 'a', sequences: 10, tokens: 100 });
    expect(totals.get('b')).toEqual({ nodeId: 'b', sequences: 5, tokens: 50 });
  });

  it('a lease that is not renewed expires and its capacity returns; a renewed one stays', async () => {
    const [ledger] = make(300);
    const a = node('a', 1, 10_000);
    const b = node('b', 1, 10_000);
    const kept = lease();
    expect((await ledger.reserve(lease(), 100, [a])).granted).toBe(0);
    expect((await ledger.reserve(kept, 100, [b])).granted).toBe(0);
    const renewing = setInterval(() => void ledger.renew([{ id: kept, nodeId: 'b', cost: 100 }]), 50);
    try {
      // a's lease lapses after 300 ms (a dead gateway): a takes a new request again.
      await eventually(async () => (await ledger.reserve(lease(), 100, [a])).granted === 0, 3000, 'the lapsed lease to return');
      // b's lease was renewed all along: b is still full.
      expect((await ledger.reserve(lease(), 100, [b])).granted).toBe(-1);
    } finally {
      clearInterval(renewing);
    }
  });
});

describe.each(implementations)('CapacityLedger rebuilt by its gateways: %s', (_name, make) => {
  it('renewing a lease the ledger lost (expired while its gateway was cut off) takes it again on its node', async () => {
    const [ledger, other] = make(200);
    const a = node('a', 2, 10_000);
    const held = { id: lease(), nodeId: 'a', cost: 300 };
    expect((await ledger.reserve(held.id, held.cost, [a])).granted).toBe(0);
    await eventually(async () => (await other.snapshot()).every((t) => t.sequences === 0), 3000, 'the lease to lapse');
    expect(await ledger.renew([held])).toBe(1);
    expect(await other.snapshot()).toEqual([{ nodeId: 'a', sequences: 1, tokens: 300 }]);
    // Renewing what the ledger has changes nothing; releasing returns it once.
    expect(await ledger.renew([held])).toBe(0);
    expect(await other.release(held.id)).toEqual({ nodeId: 'a', sequences: 0, tokens: 0 });
  });
});

describe.each(backends.each)('RedisLedger after Redis forgot everything: %s', (_name, redis) => {
  it("the gateways' renewals rebuild the totals from their running requests", async () => {
    const keyPrefix = `${root}${uniqueName('wiped')}:`;
    const gw1 = new RedisLedger({ redis: redis.connect(), keyPrefix });
    const gw2 = new RedisLedger({ redis: redis.connect(), keyPrefix });
    const a = node('a', 10, 100_000);
    const b = node('b', 10, 100_000);
    const held1 = [{ id: lease(), nodeId: 'a', cost: 100 }, { id: lease(), nodeId: 'b', cost: 50 }];
    const held2 = [{ id: lease(), nodeId: 'a', cost: 7 }];
    for (const l of held1) await gw1.reserve(l.id, l.cost, [l.nodeId === 'a' ? a : b]);
    for (const l of held2) await gw2.reserve(l.id, l.cost, [a]);
    const before = await gw1.snapshot();
    const c = redis.connect();
    await c.del(`${keyPrefix}capacity:{ledger}:totals`, `${keyPrefix}capacity:{ledger}:expiry`, `${keyPrefix}capacity:{ledger}:leases`);
    expect(await gw1.snapshot()).toEqual([]);
    expect((await gw1.renew(held1)) + (await gw2.renew(held2))).toBe(3);
    expect(sorted(await gw2.snapshot())).toEqual(sorted(before));
    expect(sorted(before)).toEqual([{ nodeId: 'a', sequences: 2, tokens: 107 }, { nodeId: 'b', sequences: 1, tokens: 50 }]);
  });
});

const sorted = <T extends { nodeId: string }>(xs: T[]): T[] => [...xs].sort((x, y) => x.nodeId.localeCompare(y.nodeId));

describe('ResilientLedger', () => {
  it('places with local accounting while the shared ledger fails, and releases those leases locally', async () => {
    const errors: number[] = [];
    let failing = true;
    const shared = new MemoryLedger();
    const broken: CapacityLedger = {
      leaseTtlMs: shared.leaseTtlMs,
      reserve: (...a) => (failing ? Promise.reject(new Error('ECONNREFUSED')) : shared.reserve(...a)),
      release: (id) => (failing ? Promise.reject(new Error('ECONNREFUSED')) : shared.release(id)),
      renew: (ids) => (failing ? Promise.reject(new Error('ECONNREFUSED')) : shared.renew(ids)),
      snapshot: () => (failing ? Promise.reject(new Error('ECONNREFUSED')) : shared.snapshot()),
      close: () => Promise.resolve(),
    };
    const ledger = new ResilientLedger(broken, createLogger({ level: 'silent', name: 'test' }), () => errors.push(1));
    const a = node('a', 1, 10_000);
    const local = lease();
    expect((await ledger.reserve(local, 10, [a])).granted).toBe(0);
    expect((await ledger.reserve(lease(), 10, [a])).granted).toBe(-1); // local limit still holds
    failing = false;
    const sharedLease = lease();
    expect((await ledger.reserve(sharedLease, 10, [a])).granted).toBe(0); // the shared ledger is empty
    expect(await ledger.snapshot()).toEqual([{ nodeId: 'a', sequences: 2, tokens: 20 }]);
    expect(await ledger.release(local)).toEqual({ nodeId: 'a', sequences: 0, tokens: 0 });
    expect(await shared.snapshot()).toEqual([{ nodeId: 'a', sequences: 1, tokens: 10 }]);
    expect(errors.length).toBeGreaterThan(0);
  });
});
