import type { UsageBuffer } from './usage-buffer.js';
import type { UsageStore } from './usage-store.js';

interface Log {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/**
 * Moves usage records from the buffer to Postgres in batches: take, insert (one statement), ack.
 * When Postgres is down nothing is acked; the batch is retried with backoff until it goes in.
 */
export class UsageFlusher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private failures = 0;
  private stopped = false;
  private readonly batchSize: number;
  private readonly intervalMs: number;

  constructor(
    private readonly opts: {
      buffer: UsageBuffer;
      store: UsageStore;
      log: Log;
      batchSize?: number;
      intervalMs?: number;
      onFlushed?: (n: number) => void;
      onError?: (err: unknown) => void;
    },
  ) {
    this.batchSize = opts.batchSize ?? 500;
    this.intervalMs = opts.intervalMs ?? 1000;
  }

  start(): void {
    this.schedule(this.intervalMs);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
      });
    }, ms);
  }

  private async tick(): Promise<void> {
    try {
      while ((await this.flushOnce()) === this.batchSize && !this.stopped) {
        // A full batch: more may be waiting.
      }
      if (this.failures > 0) this.opts.log.info({ after: this.failures }, 'usage writes resumed');
      this.failures = 0;
      this.schedule(this.intervalMs);
    } catch (err) {
      this.failures++;
      this.opts.onError?.(err);
      if (this.failures === 1) this.opts.log.warn({ err: (err as Error).message }, 'usage write failed; records kept, retrying');
      this.schedule(Math.min(30_000, this.intervalMs * 2 ** Math.min(this.failures, 5)));
    }
  }

  /** One batch: returns how many records were taken (and written or found already written). */
  async flushOnce(): Promise<number> {
    const batch = await this.opts.buffer.take(this.batchSize);
    if (batch.length === 0) return 0;
    await this.opts.store.insertBatch(batch);
    await this.opts.buffer.ack(batch.length);
    this.opts.onFlushed?.(batch.length);
    return batch.length;
  }

  /** Stops the timer, then tries one last time to write what is buffered. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    try {
      while ((await this.flushOnce()) > 0) {
        // drain
      }
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'final usage flush failed; records stay buffered');
    }
  }
}
