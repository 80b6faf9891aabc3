import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.js';
import { LeasedRateLimiter, type SliceSource } from '../../core/ratelimit/leased-rate-limiter.js';
import type { KeyLimits } from '../../core/ratelimit/rate-limiter.js';
import { RedisRateLimiter } from '../../core/ratelimit/redis-rate-limiter.js';
import { redisBackends, type TopologyHandle } from '../helpers/redis-topologies.js';
import { uniqueName } from '../helpers/services.js';

/**
 * Global limits without a round trip: regions (here, limiters with their own key prefixes on the
 * machine's Redis) admit against slices leased from the home region's buckets.
 */
const prefix = `${uniqueName('sytest_lease')}:`;
const backends = redisBackends(prefix);
const log = createLogger({ name: 'test', level: 'silent' });
const limiters: LeasedRateLimiter[] = [];
beforeAll(() => backends.start(), 60_000);
afterAll(async () => {
  await Promise.all(limiters.map((l) => l.close()));
  await backends.stop();
});

// Set per topology below (one server, a Cluster, a Sentinel set); the helpers use them.
let redis: TopologyHandle;
let home: RedisRateLimiter;
const fromHome = (region: string): SliceSource => ({ grant: (k, l, w) => home.grant(k, l, w, region), giveBack: (k, l, s) => home.giveBack(k, l, s), renewSlots: (k, n) => home.renewSlots(k, n) });
const region = (name: string, source: SliceSource = fromHome(name), idleReturnMs = 60_000): LeasedRateLimiter => {
  const limiter = new LeasedRateLimiter({ redis: redis.connect(), keyPrefix: `${prefix}${name}:`, source, log, idleReturnMs });
  limiters.push(limiter);
  return limiter;
};
const limits = (requestsPerMinute: number, tokensPerMinute = 0, maxConcurrent = 0): KeyLimits => ({ requestsPerMinute, tokensPerMinute, maxConcurrent });

describe.each(backends.each)('LeasedRateLimiter on %s', (_name, backend) => {
  beforeAll(() => {
    redis = backend;
    home = new RedisRateLimiter({ redis: redis.connect(), keyPrefix: `${prefix}home:` });
  });

  it('a burst to the home region and three others at once admits at most the limit plus one request per leasing region', async () => {
    const key = uniqueName('k');
    const l = limits(40);
    const regions = [region('a'), region('b'), region('c')];
    let admitted = 0;
    // Several waves, each letting the leases in flight land: every region keeps asking.
    for (let wave = 0; wave < 6; wave++) {
      const results = await Promise.all([
        ...Array.from({ length: 15 }, () => home.admit(key, l, 1)),
        ...regions.flatMap((r) => Array.from({ length: 15 }, () => r.admit(key, l, 1))),
      ]);
      admitted += results.filter((r) => r.allowed).length;
      await Promise.all(regions.map((r) => r.settled()));
    }
    // The bucket refills at 40/min meanwhile: a few requests at most over these waves.
    expect(admitted).toBeLessThanOrEqual(40 + 3 + 2);
    expect(admitted).toBeGreaterThanOrEqual(40);
  });

  it('concurrency holds across regions: leased slots, at most the limit plus one request per leasing region at once', async () => {
    const key = uniqueName('k');
    const l = limits(0, 0, 4);
    const regions = [region('ca'), region('cb'), region('cc')];
    const held: Array<{ r: LeasedRateLimiter | RedisRateLimiter; lease: string }> = [];
    for (let wave = 0; wave < 4; wave++) {
      const tries = await Promise.all([
        ...Array.from({ length: 3 }, async () => ({ r: home as LeasedRateLimiter | RedisRateLimiter, a: await home.admit(key, l, 1) })),
        ...regions.flatMap((r) => Array.from({ length: 3 }, async () => ({ r: r as LeasedRateLimiter | RedisRateLimiter, a: await r.admit(key, l, 1) }))),
      ]);
      for (const t of tries) if (t.a.allowed) held.push({ r: t.r, lease: t.a.leaseId as string });
      await Promise.all(regions.map((r) => r.settled()));
    }
    // Nothing settled: the requests running at once everywhere together.
    expect(held.length).toBeLessThanOrEqual(4 + 3);
    expect(held.length).toBeGreaterThanOrEqual(4);
    // Ending them frees their slots where they were taken: a new request fits again.
    await Promise.all(held.map((h) => h.r.settle(key, l, h.lease, 1, 1)));
    const again = await Promise.all([home, ...regions].map((r) => r.admit(key, l, 1)));
    expect(again.filter((a) => a.allowed).length).toBeGreaterThanOrEqual(1);
  });

  it('tokens per minute: slices of tokens, reconciled at settle within the region', async () => {
    const key = uniqueName('k');
    const l = limits(0, 1000);
    const r = region('tok');
    const first = await r.admit(key, l, 100); // ahead of its slice: the one overdraft
    expect(first.allowed).toBe(true);
    await r.settled();
    const second = await r.admit(key, l, 100);
    expect(second.allowed).toBe(true);
    await r.settle(key, l, second.leaseId as string, 100, 10); // 90 back into the slice
    await r.settled();
    const left = (await r.admit(key, l, 1)).remainingTokens;
    // 500 leased, 100 + 100 taken, 90 refunded, 1 taken: 389 (no second lease yet: above a quarter).
    expect(left).toBe(389);
  });

  it('an idle slice goes back to the home region', async () => {
    const key = uniqueName('k');
    const l = limits(60);
    const r = region('idle', fromHome('idle'), 300);
    await r.admit(key, l, 1);
    await r.settled();
    // 60 − 30 leased; after a quiet spell the 29 unused come back.
    await expect.poll(async () => (await home.grant(key, l, { requests: 0, tokens: 0 }), (await home.admit(key, l, 1)).remainingRequests), { timeout: 5000, interval: 200 }).toBeGreaterThanOrEqual(55);
  });

  it('with the home region unreachable, the region enforces the limit on its own', async () => {
    const key = uniqueName('k');
    const down: SliceSource = { grant: () => Promise.reject(new Error('ECONNREFUSED')), giveBack: () => Promise.reject(new Error('ECONNREFUSED')), renewSlots: () => Promise.reject(new Error('ECONNREFUSED')) };
    const r = region('partitioned', down);
    expect((await r.admit(key, limits(5), 1)).allowed).toBe(true); // the overdraft; the lease fails
    await r.settled();
    const results = [];
    for (let i = 0; i < 8; i++) results.push((await r.admit(key, limits(5), 1)).allowed);
    expect(results.filter(Boolean)).toHaveLength(5);
  });
});

