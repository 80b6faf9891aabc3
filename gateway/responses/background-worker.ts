import { UnrecoverableError, type Job, type Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { watchRedis } from '../../core/redis-connection.js';
import { cancelChannel, responseWorkers, type ResponseJobData } from './background-jobs.js';
import { AttemptFailed, runBackgroundResponse, type BackgroundRunDeps } from './background-run.js';
import { RedisEventLog } from './response-event-log.js';

export interface BackgroundWorkerOptions extends Omit<BackgroundRunDeps, 'events'> {
  readonly redisUrl: string;
  readonly redisPrefix: string;
  readonly concurrency: number;
  /** How long a job's lock lives without renewal: a killed worker's job is picked up after this. */
  readonly lockMs: number;
}

/**
 * Runs background responses from the region's BullMQ queue. Each job takes capacity through the
 * worker's own capacity gate (same ledger as the gateways, the response's priority class, batch
 * by default), so jobs wait for capacity instead of overloading nodes.
 *
 * Each job is one runBackgroundResponse (exactly one result, see there). A job run again after
 * its worker died (BullMQ's stalled-job recovery) finds the response in progress and runs it
 * again; upstream failures are retried by BullMQ with exponential backoff.
 */
export class BackgroundWorker {
  private readonly connection: Redis;
  private readonly subscriber: Redis;
  private readonly workers: Worker<ResponseJobData, string>[];
  private readonly events: RedisEventLog;
  private readonly run: BackgroundRunDeps;

  constructor(private readonly opts: BackgroundWorkerOptions) {
    this.connection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
    this.events = new RedisEventLog(opts.redisUrl, opts.redisPrefix, opts.log);
    this.run = { ...opts, events: this.events };
    this.subscriber = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
    this.workers = responseWorkers({ ...opts, connection: this.connection }, (job, _token, signal) => this.process(job, signal));
    watchRedis(this.connection, 'bullmq-worker', opts.log, ...this.workers);
    watchRedis(this.subscriber, 'job-cancel-subscriber', opts.log);
  }

  async start(): Promise<void> {
    await this.subscriber.subscribe(cancelChannel(this.opts.redisPrefix));
    this.subscriber.on('message', (_channel: string, responseId: string) => {
      // Only the Worker instance running the job knows it: ask each.
      if (this.workers.some((w) => w.cancelJob(responseId, 'cancelled by the client'))) this.opts.log.info({ responseId }, 'background response cancelled while running');
    });
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));
  }

  private async process(job: Job<ResponseJobData, string>, signal: AbortSignal | undefined): Promise<string> {
    const attempt = { made: job.attemptsMade, last: job.attemptsMade + 1 >= (job.opts.attempts ?? 1) };
    try {
      return await runBackgroundResponse(this.run, job.data.responseId, attempt, signal ?? new AbortController().signal);
    } catch (error) {
      // BullMQ retries a thrown job with its backoff; an UnrecoverableError ends it.
      if (error instanceof AttemptFailed && error.retry) throw error;
      throw new UnrecoverableError((error as Error).message);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
    await this.subscriber.quit().catch(() => this.subscriber.disconnect());
    await this.events.close();
    await this.connection.quit().catch(() => this.connection.disconnect());
  }
}
