import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryRateLimiter } from '../../core/ratelimit/memory-rate-limiter.js';
import type { KeyLimits, RateLimiter } from '../../core/ratelimit/rate-limiter.js';
import { RedisRateLimiter } from '../../core/ratelimit/redis-rate-limiter.js';
import { redisBackends } from '../helpers/redis-topologies.js';
import { uniqueName } from '../helpers/services.js';

/**
 * One contract, every implementation: the memory limiter and the Redis script agree, on one
 * server, a 3-master Cluster and a Sentinel-managed master.
 */
const prefix = `${uniqueName('sytest_rl')}:`;
const backends = redisBackends(prefix);
beforeAll(() => backends.start(), 60_000);
afterAll(() => backends.stop());

const implementations: Array<[string, (leaseTtlMs?: number) => RateLimiter]> = [
  ['memory', (leaseTtlMs) => new MemoryRateLimiter(leaseTtlMs === undefined ? {} : { leaseTtlMs })],
  ...backends.each.map(([name, redis]): [string, (leaseTtlMs?: number) => RateLimiter] => [
    `redis ${name}`,
    (leaseTtlMs) => new RedisRateLimiter({ redis: redis.connect(), keyPrefix: prefix, ...(leaseTtlMs === undefined ? {} : { leaseTtlMs }) }),
  ]),
];

const limits = (requestsPerMinute: number, tokensPerMinute: number, maxConcurrent: number): KeyLimits => ({ requestsPerMinute, tokensPerMinute, maxConcurrent });

describe.each(implementations)('RateLimiter contract: %s', (_name, make) => {
  it('admits exactly the requests per minute, then refuses with a retry time', async () => {
    const rl = make();
    const key = uniqueName('k');
    const l = limits(5, 0, 0);
    const results = [];
    for (let i = 0; i < 8; i++) results.push(await rl.admit(key, l, 1));
    expect(results.filter((r) => r.allowed)).toHaveLength(5);
    const refused = results[5];
    expect(refused).toMatchObject({ allowed: false, reason: 'requests', remainingRequests: 0, leaseId: undefined });
    // One request refills in 60 000 / 5 ms; a little may already have refilled.
    expect(refused?.retryAfterMs).toBeGreaterThan(10_000);
    expect(refused?.retryAfterMs).toBeLessThanOrEqual(12_000);
    expect(results[4]).toMatchObject({ allowed: true, remainingRequests: 0, limitRequests: 5 });
    expect(results[0]?.remainingRequests).toBe(4);
    expect(results[0]?.resetRequestsMs).toBeGreaterThan(11_000);
  });

  it('takes tokens at admission and reconciles them at settle (refund and overcharge)', async () => {
    const rl = make();
    const key = uniqueName('k');
    const l = limits(0, 600_000, 0); // refills 10 tokens per ms
    const a = await rl.admit(key, l, 100_000);
    expect(a).toMatchObject({ allowed: true, limitTokens: 600_000 });
    expect(a.remainingTokens).toBe(500_000);
    await rl.settle(key, l, a.leaseId as string, 100_000, 40_000); // used less: 60 000 back
    const b = await rl.admit(key, l, 0);
    expect(b.remainingTokens).toBeGreaterThanOrEqual(560_000);
    expect(b.remainingTokens).toBeLessThan(600_000);
    const c = await rl.admit(key, l, 10_000);
    await rl.settle(key, l, c.leaseId as string, 10_000, 200_000); // used more: 190 000 charged
    const d = await rl.admit(key, l, 0);
    expect(d.remainingTokens).toBeLessThan(b.remainingTokens - 190_000 + 5_000);
  });

  it('refuses a request whose tokens do not fit, and one larger than the whole bucket', async () => {
    const rl = make();
    const key = uniqueName('k');
    const l = limits(0, 1000, 0);
    expect((await rl.admit(key, l, 900)).allowed).toBe(true);
    const tooMany = await rl.admit(key, l, 500);
    expect(tooMany).toMatchObject({ allowed: false, reason: 'tokens' });
    expect(tooMany.retryAfterMs).toBeGreaterThan(20_000); // ~400 tokens at 1000/min
    expect(tooMany.retryAfterMs).toBeLessThanOrEqual(24_000);
    const never = await rl.admit(key, l, 5000);
    expect(never).toMatchObject({ allowed: false, reason: 'tokens', retryAfterMs: 60_000 });
  });

  it('limits concurrency until settle frees the lease', async () => {
    const rl = make();
    const key = uniqueName('k');
    const l = limits(0, 0, 2);
    const a = await rl.admit(key, l, 1);
    const b = await rl.admit(key, l, 1);
    expect([a.allowed, b.allowed]).toEqual([true, true]);
    expect(await rl.admit(key, l, 1)).toMatchObject({ allowed: false, reason: 'concurrency' });
    await rl.settle(key, l, a.leaseId as string, 1, 1);
    expect((await rl.admit(key, l, 1)).allowed).toBe(true);
  });

  it('a lease whose holder died expires after its TTL', async () => {
    const rl = make(50);
    const key = uniqueName('k');
    const l = limits(0, 0, 1);
    expect((await rl.admit(key, l, 1)).allowed).toBe(true);
    expect((await rl.admit(key, l, 1)).allowed).toBe(false);
    await new Promise((r) => setTimeout(r, 80)); // the TTL itself is what is under test
    expect((await rl.admit(key, l, 1)).allowed).toBe(true);
  });

  it('0 means unlimited', async () => {
    const rl = make();
    const key = uniqueName('k');
    for (let i = 0; i < 50; i++) expect((await rl.admit(key, limits(0, 0, 0), 1_000_000)).allowed).toBe(true);
  });

  it('requests made together are decided one after another, in order', async () => {
    // The Redis limiter sends the admissions (and the settles) of one event-loop turn as one script.
    const rl = make();
    const key = uniqueName('k');
    const l = limits(0, 1000, 3);
    const r = await Promise.all([400, 400, 400, 100, 50].map((cost) => rl.admit(key, l, cost)));
    expect(r.map((x) => x.allowed)).toEqual([true, true, false, true, false]);
    expect(r.map((x) => x.reason)).toEqual([undefined, undefined, 'tokens', undefined, 'concurrency']);
    expect(r.map((x) => x.remainingTokens)).toEqual([600, 200, 200, 100, 100]);
    const held = [r[0], r[1], r[3]].map((x) => x?.leaseId as string);
    expect(new Set(held).size).toBe(3);
    // Settled together: every slot is free again and the unused tokens are back.
    await Promise.all(held.map((id) => rl.settle(key, l, id, 100, 0)));
    const again = await Promise.all([1, 1, 1].map((cost) => rl.admit(key, l, cost)));
    expect(again.map((x) => x.allowed)).toEqual([true, true, true]);
    expect(again[0]?.remainingTokens).toBeGreaterThanOrEqual(399);
  });

  it('keys are independent', async () => {
    const rl = make();
    const l = limits(1, 0, 0);
    expect((await rl.admit(uniqueName('a'), l, 1)).allowed).toBe(true);
    expect((await rl.admit(uniqueName('b'), l, 1)).allowed).toBe(true);
  });
});

describe.each(backends.each)('RedisRateLimiter across connections: %s', (_name, redis) => {
  it('concurrent admissions from two replicas never exceed the limit', async () => {
    const a = new RedisRateLimiter({ redis: redis.connect(), keyPrefix: prefix });
    const b = new RedisRateLimiter({ redis: redis.connect(), keyPrefix: prefix });
    const key = uniqueName('k');
    const l = limits(40, 0, 0);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).admit(key, l, 1)));
    expect(results.filter((r) => r.allowed)).toHaveLength(40);
  });
});
