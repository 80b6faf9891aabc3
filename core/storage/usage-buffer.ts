import { randomUUID } from 'node:crypto';
import type { RedisClient } from '../redis-connection.js';
import type { UsageRecord } from './usage-store.js';

/**
 * Where usage records wait between the request that made them and the batch that writes them.
 * `push` is on the hot path: synchronous, never throws, never waits. The flusher `take`s a batch
 * (without removing it), writes it, then `ack`s it: a crash in between re-writes the batch, which
 * the store's idempotency absorbs, so nothing is lost and nothing is counted twice.
 */
export interface UsageBuffer {
  push(record: UsageRecord): void;
  take(max: number): Promise<UsageRecord[]>;
  ack(count: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

/** In-process buffer (no Redis): bounded; when full the oldest records are dropped and counted. */
export class MemoryUsageBuffer implements UsageBuffer {
  private records: UsageRecord[] = [];
  dropped = 0;

  constructor(private readonly maxRecords = 1_000_000) {}

  push(record: UsageRecord): void {
    if (this.records.length >= this.maxRecords) {
      this.records.shift();
      this.dropped++;
    }
    this.records.push(record);
  }

  async take(max: number): Promise<UsageRecord[]> {
    return this.records.slice(0, max);
  }

  async ack(count: number): Promise<void> {
    this.records.splice(0, count);
  }

  async size(): Promise<number> {
    return this.records.length;
  }

  async close(): Promise<void> {}
}

type Serialised = Omit<UsageRecord, 'createdAt'> & { createdAt: string };

/**
 * A Redis list shared by every gateway (RPUSH) and drained by workers. The records pushed during
 * one event-loop turn go out as one RPUSH at the end of it (like the turn's settles and releases):
 * no round trip per request. While Redis is unreachable records wait in a bounded local queue and
 * go out, in order, when it returns. Draining is done by one worker at a time, which holds a short
 * lease (`SET NX PX`, renewed on every take), reads the head with LRANGE and removes exactly what it
 * wrote with LTRIM: only the lease holder ever removes, and producers only append at the tail.
 */
export class RedisUsageBuffer implements UsageBuffer {
  private pending: string[] = [];
  private scheduled = false;
  private readonly workerId = randomUUID();
  private readonly lockKey: string;
  private readonly maxPending: number;
  dropped = 0;

  constructor(private readonly opts: { redis: RedisClient; key: string; maxPending?: number; lockMs?: number }) {
    this.lockKey = `${opts.key}:drain-lock`;
    this.maxPending = opts.maxPending ?? 100_000;
  }

  push(record: UsageRecord): void {
    if (this.pending.length >= this.maxPending) {
      this.pending.shift();
      this.dropped++;
    }
    this.pending.push(JSON.stringify(record));
    // One send per turn; while Redis is away a retry is scheduled and records queue behind it, in order.
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.sendPending());
    }
  }

  private async sendPending(): Promise<void> {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    try {
      await this.opts.redis.rpush(this.opts.key, ...batch);
    } catch {
      // Redis unreachable: keep them, oldest first, and try again shortly (one retry timer; new
      // records queue behind it meanwhile).
      this.pending = batch.concat(this.pending).slice(-this.maxPending);
      if (this.scheduled) return;
      this.scheduled = true;
      setTimeout(() => void this.sendPending(), 500).unref();
    }
  }

  async take(max: number): Promise<UsageRecord[]> {
    const redis = this.opts.redis;
    const lockMs = this.opts.lockMs ?? 30_000;
    const got = await redis.set(this.lockKey, this.workerId, 'PX', lockMs, 'NX');
    if (got !== 'OK') {
      if ((await redis.get(this.lockKey)) !== this.workerId) return [];
      await redis.pexpire(this.lockKey, lockMs);
    }
    const raw = await redis.lrange(this.opts.key, 0, max - 1);
    return raw.map((s) => {
      const r = JSON.parse(s) as Serialised;
      return { ...r, createdAt: new Date(r.createdAt) };
    });
  }

  async ack(count: number): Promise<void> {
    if (count > 0) await this.opts.redis.ltrim(this.opts.key, count, -1);
  }

  async size(): Promise<number> {
    return (await this.opts.redis.llen(this.opts.key)) + this.pending.length;
  }

  /** Sends what is pending (best effort) and gives up the drain lease if held. */
  async close(): Promise<void> {
    await this.sendPending();
    try {
      if ((await this.opts.redis.get(this.lockKey)) === this.workerId) await this.opts.redis.del(this.lockKey);
    } catch {
      // Redis gone: the lease expires by itself.
    }
  }
}
