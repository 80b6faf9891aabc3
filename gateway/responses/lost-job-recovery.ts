import type { Logger } from '../../core/logger.js';
import type { RedisClient } from '../../core/redis-connection.js';

/** How far back from the first sign of trouble enqueues are checked: well beyond replication lag. */
const WINDOW_MS = 10_000;
/** Wait after a sign of trouble before checking (and between tries while Redis is still away). */
const SETTLE_MS = 2000;

export interface LostJobRecoveryOptions {
  /** The queue's connection: its errors and reconnections are the signs of a failover. */
  readonly connection: RedisClient;
  /** Whether the job exists in the queue (waiting, running, delayed or failed). */
  readonly exists: (responseId: string) => Promise<boolean>;
  /** Whether the response still waits for its job ('queued' in the response store). */
  readonly stillQueued: (responseId: string) => Promise<boolean>;
  readonly enqueue: (responseId: string) => Promise<void>;
  readonly log?: Logger | undefined;
  readonly now?: () => number;
}

/**
 * Background jobs lost in a Redis failover, enqueued again. Sentinel and Cluster replicate
 * asynchronously: the last writes a master acknowledged before it died may never reach the
 * replica that takes over, and a job among them would never run while its client, who was told
 * "queued", waits forever. So the gateway remembers what it enqueued in the last few seconds;
 * after any sign of trouble on the queue's connection (an error, a reconnection, a Cluster node
 * failing) it checks each of those once Redis answers again, and enqueues again (same job id, so
 * never twice) every one whose job is gone while its response is still `queued`. A job that ran
 * and finished is gone too, but its response is no longer queued.
 */
export class LostJobRecovery {
  private readonly recent: Array<{ id: string; at: number }> = [];
  private troubleSince: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly opts: LostJobRecoveryOptions) {
    this.now = opts.now ?? Date.now;
    const trouble = (): void => this.trouble();
    opts.connection.on('error', trouble);
    opts.connection.on('reconnecting', trouble);
    opts.connection.on('node error', trouble);
    opts.connection.on('-node', trouble);
  }

  /** Remembers an enqueue (the response is `queued` and its job was acknowledged). */
  enqueued(responseId: string): void {
    const at = this.now();
    this.recent.push({ id: responseId, at });
    // Entries are in time order: drop what is older than the window, unless a check will need it.
    const keepFrom = (this.troubleSince ?? at) - WINDOW_MS;
    let drop = 0;
    while (drop < this.recent.length && (this.recent[drop] as { at: number }).at < keepFrom) drop++;
    if (drop > 0) this.recent.splice(0, drop);
  }

  private trouble(): void {
    if (this.closed) return;
    this.troubleSince ??= this.now();
    if (this.timer === undefined) this.schedule();
  }

  private schedule(): void {
    this.timer = setTimeout(() => void this.check(), SETTLE_MS);
    this.timer.unref();
  }

  /** One pass over the remembered enqueues; tried again later while Redis does not answer. */
  private async check(): Promise<void> {
    const since = (this.troubleSince ?? this.now()) - WINDOW_MS;
    const candidates = this.recent.filter((e) => e.at >= since);
    let requeued = 0;
    try {
      for (const { id } of candidates) {
        if (this.closed) return;
        if (await this.opts.exists(id)) continue;
        if (!(await this.opts.stillQueued(id))) continue;
        await this.opts.enqueue(id);
        requeued++;
      }
    } catch (err) {
      this.opts.log?.debug({ err: (err as Error).message }, 'lost-job check failed; trying again');
      if (!this.closed) this.schedule();
      return;
    }
    if (requeued > 0) this.opts.log?.warn({ requeued, checked: candidates.length }, 'background jobs lost in a Redis failover were enqueued again');
    this.timer = undefined;
    this.troubleSince = undefined;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }
}
