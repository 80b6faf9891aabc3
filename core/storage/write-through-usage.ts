import type { Logger } from '../logger.js';
import type { UsageBuffer } from './usage-buffer.js';
import type { UsageRecord, UsageStore } from './usage-store.js';

export interface WriteThroughOptions {
  readonly store: UsageStore;
  /** Where records go while Postgres is unreachable (the region's Redis list, drained by workers). */
  readonly fallback: UsageBuffer;
  /** How long a record waits in this process before its batch is written: the loss bound of a crash. */
  readonly intervalMs: number;
  readonly log: Logger;
  readonly batchSize?: number;
  readonly maxPending?: number;
  readonly onError?: () => void;
}

/**
 * Usage records written to Postgres by the process that made them, in batches (one INSERT per
 * interval, idempotent on the record id), with Redis only as the fallback while Postgres is
 * unreachable. So a Redis that restarts empty loses nothing (records do not live there), a worker
 * killed while draining the fallback re-reads it (nothing is acknowledged before it is written),
 * and a record is never counted twice (the id is the primary key). What a crash of this process
 * loses is what it had not written yet: at most `intervalMs` of its records.
 *
 * `take`/`ack`/`size` are the fallback's: the worker's flusher drains it into Postgres.
 */
export class WriteThroughUsageBuffer implements UsageBuffer {
  private pending: UsageRecord[] = [];
  private readonly timer: NodeJS.Timeout;
  private writing: Promise<void> | undefined;
  private failing = false;
  dropped = 0;

  constructor(private readonly opts: WriteThroughOptions) {
    this.timer = setInterval(() => void this.flush(), opts.intervalMs);
    this.timer.unref();
  }

  push(record: UsageRecord): void {
    if (this.pending.length >= (this.opts.maxPending ?? 100_000)) {
      this.pending.shift();
      this.dropped++;
    }
    this.pending.push(record);
  }

  /** Writes what is pending; one write at a time. */
  flush(): Promise<void> {
    this.writing ??= this.writePending().finally(() => {
      this.writing = undefined;
    });
    return this.writing;
  }

  private async writePending(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.slice(0, this.opts.batchSize ?? 1000);
      try {
        await this.opts.store.insertBatch(batch);
        if (this.failing) this.opts.log.info({}, 'usage records written to Postgres again');
        this.failing = false;
      } catch (err) {
        this.opts.onError?.();
        if (!this.failing) this.opts.log.warn({ err: (err as Error).message }, 'Postgres unreachable: usage records go to the Redis fallback until it is back');
        this.failing = true;
        // The fallback keeps them (and, with Redis away too, holds them in memory and retries).
        for (const record of batch) this.opts.fallback.push(record);
      }
      this.pending.splice(0, batch.length);
    }
  }

  take(max: number): Promise<UsageRecord[]> {
    return this.opts.fallback.take(max);
  }

  ack(count: number): Promise<void> {
    return this.opts.fallback.ack(count);
  }

  async size(): Promise<number> {
    return this.pending.length + (await this.opts.fallback.size());
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    await this.opts.fallback.close();
  }
}
