import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { bullPrefix, responseQueueName } from '../../gateway/responses/background-jobs.js';

/**
 * The consumer side of the jobs benchmark, in its own process as `switchyard worker` would be:
 * a BullMQ Worker with the worker's queue, prefix and concurrency, whose processor only records
 * how long each job waited between its enqueue (`job.timestamp`, set by the producer) and the
 * start of processing. Writes one line per job (`L <ms>`); the runner stops it.
 * Usage: node consumer.js <redisUrl> <prefix> <region>
 */
const [redisUrl = 'redis://127.0.0.1:6379', prefix = 'bench:', region = 'bench'] = process.argv.slice(2);
const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const pending: string[] = [];
const worker = new Worker(
  responseQueueName(region),
  (job) => {
    pending.push(`L ${Date.now() - job.timestamp}\n`);
    return Promise.resolve('ok');
  },
  { connection, prefix: bullPrefix(prefix), concurrency: 256, lockDuration: 30_000 },
);
// Batched writes: one stdout write per millisecond at most, not one per job.
setInterval(() => {
  if (pending.length > 0) process.stdout.write(pending.splice(0).join(''));
}, 1).unref();
void worker.waitUntilReady().then(() => process.stdout.write('ready\n'));
process.on('SIGTERM', () => void worker.close().then(() => process.exit(0)));
