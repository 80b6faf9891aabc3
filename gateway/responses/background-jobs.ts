import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

/** Job payload: the response to run; everything else is in the response store. */
export interface ResponseJobData {
  readonly responseId: string;
}

export interface BackgroundJobOptions {
  readonly redisUrl: string;
  readonly redisPrefix: string;
  readonly region: string;
  /** Runs of a job before it fails for good (upstream errors are retried with backoff). */
  readonly attempts: number;
}

export function responseQueueName(region: string): string {
  return `responses-${region}`;
}

export function bullPrefix(redisPrefix: string): string {
  return `${redisPrefix}bull`;
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
export class BackgroundJobs {
  private readonly connection: Redis;
  private readonly queue: Queue<ResponseJobData>;

  constructor(private readonly opts: BackgroundJobOptions) {
    // BullMQ wants its own connection, retrying forever rather than failing commands.
    this.connection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
    this.queue = new Queue<ResponseJobData>(responseQueueName(opts.region), {
      connection: this.connection,
      prefix: bullPrefix(opts.redisPrefix),
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

  /** Jobs by state, for metrics and tests. */
  counts(): Promise<Record<string, number>> {
    return this.queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized');
  }

  async close(): Promise<void> {
    await this.queue.close();
    await this.connection.quit().catch(() => this.connection.disconnect());
  }
}
