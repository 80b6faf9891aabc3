import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { bullPrefix, responseQueueName } from '../../gateway/responses/background-jobs.js';

/**
 * The consumer side of the jobs benchmark, in its own process as `switchyard worker` would be:
 * a BullMQ Worker with the worker's queue, prefix and concurrency, whose processor only records
 * how long each job waited between its enqueue (`job.timestamp`, set by the producer) and the
 * start of processing. Prints the latencies as JSON once `expected` jobs have started.
 * Usage: node consumer.js <redisUrl> <prefix> <region> <expected>
 */
const [redisUrl = 'redis://127.0.0.1:6379', prefix = 'bench:', region = 'bench', expectedArg = '0'] = process.argv.slice(2);
const expected = Number(expectedArg);
const latencies: number[] = [];
const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const worker = new Worker(
  responseQueueName(region),
  (job) => {
    latencies.push(Date.now() - job.timestamp);
    if (latencies.length === expected) {
      process.stdout.write(`${JSON.stringify({ latencies })}\n`);
      setImmediate(() => void worker.close().then(() => process.exit(0)));
    }
    return Promise.resolve('ok');
  },
  { connection, prefix: bullPrefix(prefix), concurrency: 256, lockDuration: 30_000 },
);
void worker.waitUntilReady().then(() => process.stdout.write('ready\n'));
