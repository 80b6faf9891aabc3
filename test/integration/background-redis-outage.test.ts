import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.js';
import { MemoryResponseStore, type PgResponseArchive, type StoredResponse } from '../../core/storage/response-store.js';
import { MemoryUsageBuffer } from '../../core/storage/usage-buffer.js';
import { BackgroundJobs } from '../../gateway/responses/background-jobs.js';
import { BackgroundWorker } from '../../gateway/responses/background-worker.js';
import type { ResponseRunner, RunResult } from '../../gateway/responses/response-runner.js';
import { eventually } from '../helpers/processes.js';
import { REDIS_URL, testRedis, uniqueName } from '../helpers/services.js';

/**
 * A background job whose run starts while the response store's Redis is unreachable (a failover,
 * a restart) is run again once it answers, without spending an attempt: failing it would leave
 * its response `queued` for ever, since the store could not be told either.
 */
const prefix = `${uniqueName('sytest_bgout')}:`;
const redis = testRedis(prefix);
const log = createLogger({ name: 'test', level: 'silent' });
const closing: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of closing.reverse()) await c();
  await redis.cleanup();
});

const archive = { load: () => Promise.resolve(undefined), save: () => Promise.resolve(), remove: () => Promise.resolve(false) } as unknown as PgResponseArchive;
const runner = {
  stream: (): Promise<RunResult> => Promise.resolve({ text: 'ok', usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }, nodeId: 'n', finishReason: 'stop' }),
  complete: (): Promise<RunResult> => Promise.resolve({ text: 'ok', usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }, nodeId: 'n', finishReason: 'stop' }),
} as unknown as ResponseRunner;

describe('BackgroundWorker while Redis is away', () => {
  it('postpones a job whose store call failed for want of Redis, and completes it once Redis answers', async () => {
    const store = new MemoryResponseStore(archive);
    // The first two reads fail as the fail-fast state connection does while Redis is away.
    let failures = 2;
    const get = store.get.bind(store);
    store.get = (id: string) => (failures-- > 0 ? Promise.reject(new Error("Stream isn't writeable and enableOfflineQueue options is false")) : get(id));
    const id = `resp_${uniqueName('o')}`;
    const record: StoredResponse = {
      id, conversationId: id, createdAt: 1_800_000_000, status: 'queued', model: 'm', instructions: null, input: [{ role: 'user', content: 'hi' }],
      previousResponseId: null, outputText: null, messageId: 'msg_1', usage: null, error: null, incompleteReason: null, background: true,
      store: true, metadata: {}, params: {}, tenant: 't', priority: 'batch', nodeId: null,
    };
    await store.put(record);
    const worker = new BackgroundWorker({ redis: REDIS_URL, redisPrefix: prefix, region: 'r', concurrency: 1, lockMs: 5000, route: () => [], store, runner, usage: new MemoryUsageBuffer(), log });
    closing.push(() => worker.close(1000));
    await worker.start();
    // One attempt only: a job failed for Redis's absence would be failed for good.
    const jobs = new BackgroundJobs({ redis: REDIS_URL, redisPrefix: prefix, region: 'r', attempts: 1 });
    closing.push(() => jobs.close());
    await jobs.enqueue(id);
    await eventually(async () => (await get(id))?.status === 'completed', 15_000, 'the response completed');
    expect(failures).toBeLessThan(0);
    expect((await get(id))?.outputText).toBe('ok');
  }, 30_000);
});
