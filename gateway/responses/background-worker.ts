import { DelayedError, UnrecoverableError, type Job, type Worker } from 'bullmq';
import { closeRedis, connectRedis, duplicateRedis, isRedisUnavailable, watchRedis, type RedisClient, type RedisTarget } from '../../core/redis-connection.js';
import { cancelChannel, responseWorkers, type ResponseJobData } from './background-jobs.js';
import { AttemptFailed, runBackgroundResponse, type BackgroundRunDeps } from './background-run.js';
import { RedisEventLog } from './response-event-log.js';

export interface BackgroundWorkerOptions extends Omit<BackgroundRunDeps, 'events'> {
  /** The region's Redis: the settings (one server, Sentinel or Cluster) or a URL. */
  readonly redis: RedisTarget;
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
  private readonly connection: RedisClient;
  private readonly subscriber: RedisClient;
  private readonly workers: Worker<ResponseJobData, string>[];
  private readonly events: RedisEventLog;
  private readonly run: BackgroundRunDeps;

  constructor(private readonly opts: BackgroundWorkerOptions) {
    this.connection = connectRedis(opts.redis, 'bullmq-worker', opts.log, 'queue');
    this.events = new RedisEventLog(opts.redis, opts.redisPrefix, opts.log);
    this.run = { ...opts, events: this.events };
    this.subscriber = duplicateRedis(this.connection, 'job-cancel-subscriber', opts.log);
    this.workers = responseWorkers({ ...opts, connection: this.connection }, (job, token, signal) => this.process(job, token, signal));
    // connectRedis watches the connection itself; this adds the Workers' errors to its outage.
    watchRedis(this.connection, 'bullmq-worker', opts.log, ...this.workers);
  }

  /** The command connection, e.g. to check Redis's persistence settings at start-up. */
  get redis(): RedisClient {
    return this.connection;
  }

  async start(): Promise<void> {
    await this.subscriber.subscribe(cancelChannel(this.opts.redisPrefix));
    this.subscriber.on('message', (_channel: string, responseId: string) => {
      // Only the Worker instance running the job knows it: ask each.
      if (this.workers.some((w) => w.cancelJob(responseId, 'cancelled by the client'))) this.opts.log.info({ responseId }, 'background response cancelled while running');
    });
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));
  }

  private async process(job: Job<ResponseJobData, string>, token: string | undefined, signal: AbortSignal | undefined): Promise<string> {
    const attempt = { made: job.attemptsMade, last: job.attemptsMade + 1 >= (job.opts.attempts ?? 1) };
    try {
      return await runBackgroundResponse(this.run, job.data.responseId, attempt, signal ?? new AbortController().signal);
    } catch (error) {
      if (signal?.aborted !== true && (isRedisUnavailable(error) || isRedisUnavailable((error as Error).cause))) {
        // Redis failing over or restarting is not the response's fault: run it again shortly
        // without spending an attempt. Failing it for good would leave its response `queued` or
        // `in_progress` forever (the store could not be told either). If Redis is still away,
        // the job's lock lapses and BullMQ's stalled-job check puts it back.
        this.opts.log.warn({ responseId: job.data.responseId, err: (error as Error).message }, 'background response postponed: Redis unreachable');
        await job.moveToDelayed(Date.now() + 1000, token);
        throw new DelayedError();
      }
      // BullMQ retries a thrown job with its backoff; an UnrecoverableError ends it.
      if (error instanceof AttemptFailed && error.retry) throw error;
      throw new UnrecoverableError((error as Error).message);
    }
  }

  /**
   * Lets running jobs finish (BullMQ's graceful close) within `graceMs`. With Redis unreachable
   * the graceful close would wait on its connections forever, and a worker told to stop must
   * still exit: it closes by force instead (BullMQ memoises close, so the choice is made first);
   * its unfinished jobs are picked up again after their lock. Jobs still running after the grace
   * period are left to end when the caller closes the upstream pools.
   */
  async close(graceMs = 10_000): Promise<void> {
    if (this.connection.status !== 'ready') {
      this.opts.log.warn({ redis: this.connection.status }, 'Redis unreachable: background workers closed by force');
      await Promise.all(this.workers.map((w) => w.close(true)));
    } else {
      let timer: NodeJS.Timeout | undefined;
      const closed = Promise.all(this.workers.map((w) => w.close())).then(() => true);
      const graceOver = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)));
      if (!(await Promise.race([closed, graceOver]))) this.opts.log.warn({ graceMs }, 'background jobs still running after the grace period');
      clearTimeout(timer);
    }
    await closeRedis(this.subscriber);
    await this.events.close();
    await closeRedis(this.connection);
  }
}
