import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';

/** One node's engine load, as the scheduler received it from the node's agent. */
export interface LiveLoad {
  readonly nodeId: string;
  readonly running: number;
  readonly waiting: number;
  readonly kvCacheUsage: number | undefined;
  /** Scheduler's receive time, ms since the epoch (gateways judge freshness by it). */
  readonly atMs: number;
  /** Capacity the scheduler has learned from the node's token counter (declared as prior). */
  readonly learnedTokensPerSecond?: number | undefined;
}

/**
 * How load reports travel from the scheduler to every gateway: published as they arrive, so a
 * gateway sees a node's load within one report interval and never polls a database for it.
 */
export interface LiveState {
  publish(load: LiveLoad): void;
  subscribe(onLoad: (load: LiveLoad) => void): Promise<void>;
  close(): Promise<void>;
}

/** Scheduler and gateways in one process (`switchyard start`, no Redis). */
export class MemoryLiveState implements LiveState {
  private readonly events = new EventEmitter();

  publish(load: LiveLoad): void {
    this.events.emit('load', load);
  }

  async subscribe(onLoad: (load: LiveLoad) => void): Promise<void> {
    this.events.on('load', onLoad);
  }

  async close(): Promise<void> {
    this.events.removeAllListeners();
  }
}

/** Redis pub/sub on `${prefix}live-load`; a subscriber uses its own connection, as Redis requires. */
export class RedisLiveState implements LiveState {
  private readonly channel: string;
  private subscriber: Redis | undefined;

  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.channel = `${prefix}live-load`;
  }

  publish(load: LiveLoad): void {
    // Fire and forget: the next report supersedes a lost one.
    this.redis.publish(this.channel, JSON.stringify(load)).catch(() => undefined);
  }

  async subscribe(onLoad: (load: LiveLoad) => void): Promise<void> {
    const sub = this.redis.duplicate({ enableOfflineQueue: true });
    this.subscriber = sub;
    sub.on('error', () => undefined); // reconnects by itself; the publisher side logs outages
    sub.on('message', (_channel: string, message: string) => {
      try {
        onLoad(JSON.parse(message) as LiveLoad);
      } catch {
        // a malformed message is ignored
      }
    });
    await sub.subscribe(this.channel);
  }

  async close(): Promise<void> {
    await this.subscriber?.quit().catch(() => this.subscriber?.disconnect());
  }
}
