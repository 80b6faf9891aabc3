import type { Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { RedisRateLimiter } from '../../core/ratelimit/redis-rate-limiter.js';
import { RedisLedger } from '../../scheduler/capacity/redis-ledger.js';
import { REDIS_URL, uniqueName } from '../helpers/services.js';

/**
 * The limiter's and the ledger's calls of one event-loop turn, on one connection, leave in one
 * socket write (the batchers flush together with the socket corked): counted at the socket.
 */
const prefix = `${uniqueName('sytest_batch')}:`;
const redis = new Redis(REDIS_URL, { enableAutoPipelining: false });
afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe('one turn, one write', () => {
  it('admissions and reservations made together go out in one write, and so do their settles and releases', async () => {
    const limiter = new RedisRateLimiter({ redis, keyPrefix: prefix });
    const ledger = new RedisLedger({ redis, keyPrefix: prefix });
    const limits = { requestsPerMinute: 1000, tokensPerMinute: 100_000, maxConcurrent: 10 };
    const node = { id: 'n', maxSequences: 10, tokenBudget: 10_000 };
    // The first calls load the scripts (EVALSHA, then EVAL on NOSCRIPT).
    const warm = await limiter.admit('k', limits, 1);
    await ledger.reserve('warm', 1, [node]);
    await Promise.all([limiter.settle('k', limits, warm.leaseId as string, 1, 1), ledger.release('warm')]);

    const socket = (redis as unknown as { stream: Socket & { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void } }).stream;
    let writes = 0;
    const write = socket._write.bind(socket);
    const writev = socket._writev.bind(socket);
    socket._write = (...a: unknown[]) => {
      writes++;
      write(...a);
    };
    socket._writev = (...a: unknown[]) => {
      writes++;
      writev(...a);
    };
    try {
      const [a1, a2, r1] = await Promise.all([limiter.admit('k', limits, 5), limiter.admit('k', limits, 5), ledger.reserve('l1', 10, [node])]);
      expect(writes).toBe(1);
      expect([a1.allowed, a2.allowed, r1.granted]).toEqual([true, true, 0]);
      writes = 0;
      await Promise.all([limiter.settle('k', limits, a1.leaseId as string, 5, 3), limiter.settle('k', limits, a2.leaseId as string, 5, 3), ledger.release('l1')]);
      expect(writes).toBe(1);
    } finally {
      socket._write = write;
      socket._writev = writev;
    }
  });
});
