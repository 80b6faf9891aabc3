import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackgroundJobs, FETCH_LOOPS, responseWorkers } from '../../gateway/responses/background-jobs.js';
import { closeRedis } from '../../core/redis-connection.js';
import { redisBackends } from '../helpers/redis-topologies.js';
import { uniqueName } from '../helpers/services.js';

/**
 * A worker process runs FETCH_LOOPS BullMQ Workers on the region's queue (bench/jobs shows why):
 * together they must keep the process's concurrency, and every loop must take jobs.
 */
const prefix = `${uniqueName('rworkers')}:`;
const backends = redisBackends(prefix);
beforeAll(() => backends.start(), 60_000);
afterAll(() => backends.stop());

describe.each(backends.each)('responseWorkers on %s', (_name, redis) => {
  it('splits the concurrency over the fetch loops and never runs more than it at once', async () => {
    expect(FETCH_LOOPS).toBeGreaterThan(1);
    const connection = redis.connect();
    const jobs = new BackgroundJobs({ redis: redis.endpoint(), redisPrefix: prefix, region: 'r1', attempts: 1 });
    let running = 0;
    let peak = 0;
    let done = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const workers = responseWorkers({ connection, redisPrefix: prefix, region: 'r1', concurrency: 5, lockMs: 30_000 }, async () => {
      running++;
      peak = Math.max(peak, running);
      await gate;
      running--;
      done++;
      return 'ok';
    });
    const tookJobs = new Set<string>();
    for (const w of workers) w.on('active', () => tookJobs.add(w.id));

    expect(workers.map((w) => w.concurrency)).toEqual([3, 2]);
    await Promise.all(Array.from({ length: 12 }, (_, i) => jobs.enqueue(`resp_${i}`)));
    // Five at once needs both loops: neither may run more than its share.
    await expect.poll(() => running, { timeout: 10_000 }).toBe(5);
    expect(tookJobs.size).toBe(workers.length);
    release();
    await expect.poll(() => done, { timeout: 10_000 }).toBe(12);
    expect(peak).toBe(5);
    await Promise.all(workers.map((w) => w.close()));
    await jobs.close();
    await closeRedis(connection);
  });

  it('runs one loop when the concurrency is one', async () => {
    const connection = redis.connect();
    const workers = responseWorkers({ connection, redisPrefix: prefix, region: 'r2', concurrency: 1, lockMs: 30_000 }, () => Promise.resolve('ok'));
    expect(workers.map((w) => w.concurrency)).toEqual([1]);
    await Promise.all(workers.map((w) => w.close()));
  });
});
