import { Redis } from 'ioredis';
import { responseWorkers } from '../../gateway/responses/background-jobs.js';

/**
 * The consumer side of the jobs benchmark, in its own process as `switchyard worker` would be:
 * the same BullMQ Workers (`responseWorkers`: queue, prefix, fetch loops, locks) with the worker's
 * default concurrency, whose processor only records when each job started
 * (`S <jobId> <epoch ms, sub-millisecond>`; the runner knows when it enqueued that id). Lines go
 * out in batches every 50 ms, so that reporting adds few wake-ups to the measured path.
 * Usage: node consumer.js <redisUrl> <prefix> <region> [fetchLoops]
 */
const [redisUrl = 'redis://127.0.0.1:6379', prefix = 'bench:', region = 'bench', loops] = process.argv.slice(2);
const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const origin = performance.timeOrigin;
let pending = '';
const workers = responseWorkers({ connection, redisPrefix: prefix, region, concurrency: 256, lockMs: 30_000, ...(loops === undefined ? {} : { fetchLoops: Number(loops) }) }, (job) => {
  pending += `S ${job.id ?? ''} ${origin + performance.now()}\n`;
  return Promise.resolve('ok');
});
setInterval(() => {
  if (pending.length > 0) {
    process.stdout.write(pending);
    pending = '';
  }
}, 50).unref();
void Promise.all(workers.map((w) => w.waitUntilReady())).then(() => process.stdout.write('ready\n'));
process.on('SIGTERM', () => void Promise.all(workers.map((w) => w.close())).then(() => process.exit(0)));
