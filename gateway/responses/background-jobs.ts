import { Queue, Worker, type Processor } from 'bullmq';
import { Cluster } from 'ioredis';
import { closeRedis, connectRedis, watchRedis, type RedisClient, type RedisTarget } from '../../core/redis-connection.js';
import type { Logger } from '../../core/logger.js';
import { LostJobRecovery } from './lost-job-recovery.js';

/**
 * Where the gateway hands background responses: the region's BullMQ queue (BackgroundJobs), or
 * this process itself (InProcessJobs, `switchyard start` without Redis).
 */
export interface JobQueue {
  enqueue(responseId: string): Promise<void>;
  /** Stops the job wherever it is: removed while waiting, aborted while running. */
  cancel(responseId: string): Promise<void>;
  /** Why new background responses would not run now (nobody serves the queue), else undefined. */
  unavailable(now: number): string | undefined;
  /** Consumers serving the queue as last seen; undefined while unknown. */
  workerCount(): number | undefined;
  /** Jobs not finished yet (and recent failures), newest first: the admin API lists them. */
  list?(limit: number): Promise<Array<{ id: string; state: string }>>;
  close(): Promise<void>;
}

/** Job payload: the response to run; everything else is in the response store. */
export interface ResponseJobData {
  readonly responseId: string;
}

export interface BackgroundJobOptions {
  /** The region's Redis: the settings (one server, Sentinel or Cluster) or a URL. */
  readonly redis: RedisTarget;
  readonly redisPrefix: string;
  readonly region: string;
  /** Runs of a job before it fails for good (upstream errors are retried with backoff). */
  readonly attempts: number;
  /** Says when its Redis connections lose Redis and get it back. */
  readonly log?: Logger;
  /**
   * Whether a response still waits for its job (the response store says `queued`): with it, jobs
   * lost in a Redis failover are enqueued again (LostJobRecovery).
   */
  readonly stillQueued?: (responseId: string) => Promise<boolean>;
}

export interface WorkerWatchOptions {
  /** How long the queue may go without a worker before new background responses are refused. */
  readonly graceMs: number;
  readonly log: Logger;
  readonly now?: () => number;
}

export function responseQueueName(region: string): string {
  return `responses-${region}`;
}

/**
 * BullMQ's key prefix. Its scripts touch several keys of a queue at once, so on a Redis Cluster
 * the prefix is a hash tag (`{switchyard:bull}`): every key of the region's queue in one slot.
 */
export function bullPrefix(redisPrefix: string, connection?: RedisClient): string {
  return connection instanceof Cluster ? `{${redisPrefix}bull}` : `${redisPrefix}bull`;
}

/**
 * Worker instances per worker process. A BullMQ Worker fetches jobs one at a time (a blocking
 * wait, then sequential `moveToActive` round trips, one of them a look-ahead for the next job)
 * before it starts processing what it fetched; a second instance on the same queue takes the next
 * job while the first is still mid-round-trip. Measured with `npm run bench:jobs`
 * (docs/benchmarks.md): enqueue-to-start p99 a quarter to a third lower at 1,000 jobs/s.
 */
export const FETCH_LOOPS = 2;

export interface ResponseWorkerOptions {
  /** Shared command connection (each Worker opens its own blocking connection from it). */
  readonly connection: RedisClient;
  readonly redisPrefix: string;
  readonly region: string;
  /** Jobs run at once by this process, split over the fetch loops. */
  readonly concurrency: number;
  /** How long a job's lock lives without renewal: a killed worker's job is picked up after this. */
  readonly lockMs: number;
  /** Worker instances; FETCH_LOOPS unless a benchmark compares. */
  readonly fetchLoops?: number;
}

/** The BullMQ Workers of one worker process: `switchyard worker` and the jobs benchmark build them here. */
export function responseWorkers<R>(opts: ResponseWorkerOptions, processor: Processor<ResponseJobData, R>): Worker<ResponseJobData, R>[] {
  const loops = Math.max(1, Math.min(opts.fetchLoops ?? FETCH_LOOPS, opts.concurrency));
  return Array.from({ length: loops }, (_, i) => {
    const concurrency = Math.floor(opts.concurrency / loops) + (i < opts.concurrency % loops ? 1 : 0);
    return new Worker<ResponseJobData, R>(responseQueueName(opts.region), processor, {
      connection: opts.connection,
      prefix: bullPrefix(opts.redisPrefix, opts.connection),
      concurrency,
      lockDuration: opts.lockMs,
      stalledInterval: Math.max(1000, Math.floor(opts.lockMs / 2)),
      maxStalledCount: 3,
    });
  });
}

export function cancelChannel(redisPrefix: string): string {
  return `${redisPrefix}responses:cancel`;
}

/**
 * The gateway's side of background responses: one BullMQ queue per region (workers of that
 * region consume it), the job id being the response id (so a retried submit cannot enqueue twice),
 * and cancellation: a waiting job is removed, a running one is aborted by whichever worker runs
 * it (a message on a Redis channel every worker listens to).
 */
export class BackgroundJobs implements JobQueue {
  private readonly connection: RedisClient;
  private readonly queue: Queue<ResponseJobData>;
  private watch: { timer: NodeJS.Timeout; opts: WorkerWatchOptions } | undefined;
  private workers: number | undefined;
  /** Since when the queue has had no worker (ms), while it has none. */
  private missingSince: number | undefined;
  private readonly recovery: LostJobRecovery | undefined;

  constructor(private readonly opts: BackgroundJobOptions) {
    // BullMQ wants its own connection, retrying forever rather than failing commands.
    this.connection = connectRedis(opts.redis, 'bullmq-queue', opts.log, 'queue');
    this.queue = new Queue<ResponseJobData>(responseQueueName(opts.region), {
      connection: this.connection,
      prefix: bullPrefix(opts.redisPrefix, this.connection),
    });
    watchRedis(this.connection, 'bullmq-queue', opts.log, this.queue);
    this.recovery =
      opts.stillQueued === undefined
        ? undefined
        : new LostJobRecovery({
            connection: this.connection,
            exists: async (id) => (await this.queue.getJob(id)) !== undefined,
            stillQueued: opts.stillQueued,
            enqueue: (id) => this.enqueue(id),
            log: opts.log,
          });
  }

  async enqueue(responseId: string): Promise<void> {
    await this.queue.add(
      'response',
      { responseId },
      {
        jobId: responseId,
        attempts: this.opts.attempts,
        backoff: { type: 'exponential', delay: 1000 },
        // The response store holds the result: a finished job has nothing left worth keeping.
        removeOnComplete: true,
        removeOnFail: { age: 24 * 3600, count: 10_000 },
      },
    );
    this.recovery?.enqueued(responseId);
  }

  /** Stops the job wherever it is: removed while waiting, aborted while running. */
  async cancel(responseId: string): Promise<void> {
    const job = await this.queue.getJob(responseId);
    if (job !== undefined) {
      // Fails for a job a worker holds (locked): that one is aborted through the channel.
      await job.remove().catch(() => undefined);
    }
    await this.connection.publish(cancelChannel(this.opts.redisPrefix), responseId);
  }

  /**
   * Watches the queue's workers (BullMQ's registry: the named Redis connections of its Workers,
   * read with CLIENT LIST). A queue nobody serves is logged once, and once it has had no worker
   * for `graceMs` new background responses are refused instead of queued silently. Where CLIENT
   * LIST is not allowed the count stays unknown and nothing is refused.
   */
  watchWorkers(opts: WorkerWatchOptions): void {
    if (this.watch !== undefined) return;
    const intervalMs = Math.min(5000, Math.max(250, Math.floor(opts.graceMs / 3)));
    const timer = setInterval(() => void this.checkWorkers(), intervalMs);
    timer.unref();
    this.watch = { timer, opts };
    void this.checkWorkers();
  }

  /** One look at the workers: remembers the count and when the queue lost its last one. */
  private async checkWorkers(): Promise<void> {
    const watch = this.watch;
    if (watch === undefined) return;
    const now = (watch.opts.now ?? Date.now)();
    const count = await this.queue.getWorkersCount().catch(() => undefined);
    if (this.watch === undefined) return; // closed meanwhile
    this.workers = count;
    if (count === undefined || count > 0) {
      if (this.missingSince !== undefined && count !== undefined) watch.opts.log.info({ region: this.opts.region, workers: count }, 'a worker serves the background queue again');
      this.missingSince = undefined;
      return;
    }
    if (this.missingSince === undefined) {
      this.missingSince = now;
      watch.opts.log.warn(
        { region: this.opts.region, queue: responseQueueName(this.opts.region) },
        'no switchyard worker serves this region\'s background queue: background responses will wait until one starts',
      );
    }
  }

  unavailable(now: number): string | undefined {
    const since = this.missingSince;
    if (this.watch === undefined || since === undefined || now - since < this.watch.opts.graceMs) return undefined;
    const region = this.opts.region;
    return `No \`switchyard worker\` serves region ${region}'s background queue (none seen for ${Math.round((now - since) / 1000)} s), so background responses would not run: start one with \`switchyard worker --region ${region}\` and the same REDIS_URL.`;
  }

  workerCount(): number | undefined {
    return this.workers;
  }

  async list(limit: number): Promise<Array<{ id: string; state: string }>> {
    const out: Array<{ id: string; state: string }> = [];
    for (const state of ['active', 'waiting', 'prioritized', 'delayed', 'failed'] as const) {
      if (out.length >= limit) break;
      for (const job of await this.queue.getJobs([state], 0, limit - out.length - 1)) if (job?.id !== undefined) out.push({ id: job.id, state });
    }
    return out;
  }

  /** Jobs by state, for metrics and tests. */
  counts(): Promise<Record<string, number>> {
    return this.queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized');
  }

  async close(): Promise<void> {
    this.recovery?.close();
    if (this.watch !== undefined) clearInterval(this.watch.timer);
    this.watch = undefined;
    await this.queue.close();
    await closeRedis(this.connection);
  }
}
