import { EventEmitter } from 'node:events';
import type { Logger } from '../logger.js';
import { closeRedis, duplicateRedis, type RedisClient } from '../redis-connection.js';

/** One node's engine load, as the scheduler received it from the node's agent. */
/** A node's GPUs summed up: what an operator watches (the agent's /metrics has each GPU). */
export interface GpuSummary {
  readonly count: number;
  /** Mean utilisation 0..1 over the GPUs that report it; null when none does. */
  readonly utilization: number | null;
  readonly memoryUsedBytes: number | null;
  readonly memoryTotalBytes: number | null;
}

export interface LiveLoad {
  readonly nodeId: string;
  readonly running: number;
  readonly waiting: number;
  readonly kvCacheUsage: number | undefined;
  /** Scheduler's receive time, ms since the epoch (gateways judge freshness by it). */
  readonly atMs: number;
  /** The agent could not reach its engine at this report: the node serves nothing now. */
  readonly engineDown?: boolean | undefined;
  /** The node's GPUs (or MIG instances) together, as its agent read them; absent without any. */
  readonly gpu?: GpuSummary | undefined;
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

/**
 * Redis: the latest load of every node in the hash `${prefix}live-nodes` (so a gateway that starts
 * knows the fleet at once) and each report on the channel `${prefix}live-load`. A subscriber uses
 * its own connection, as Redis requires; one connection serves every subscriber of this object
 * (`switchyard start` runs the gateway's and the worker's fleet views in one process), so
 * `close()` has exactly one to end.
 */
export class RedisLiveState implements LiveState {
  private readonly channel: string;
  private readonly hash: string;
  private readonly listeners = new Set<(load: LiveLoad) => void>();
  private subscribed: Promise<RedisClient> | undefined;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
    /** Says when the subscriber connection loses Redis and gets it back. */
    private readonly log?: Logger,
  ) {
    this.channel = `${prefix}live-load`;
    this.hash = `${prefix}live-nodes`;
  }

  publish(load: LiveLoad): void {
    const json = JSON.stringify(load);
    // Fire and forget: the next report supersedes a lost one.
    this.redis.multi().hset(this.hash, load.nodeId, json).publish(this.channel, json).exec().catch(() => undefined);
  }

  async subscribe(onLoad: (load: LiveLoad) => void): Promise<void> {
    this.listeners.add(onLoad);
    this.subscribed ??= this.openSubscriber();
    await this.subscribed;
    // Then the stored state: a report that raced the subscription is at worst applied twice.
    const stored = await this.redis.hgetall(this.hash).catch(() => ({}) as Record<string, string>);
    for (const json of Object.values(stored)) {
      const load = parseLoad(json);
      if (load !== undefined) onLoad(load);
    }
  }

  private async openSubscriber(): Promise<RedisClient> {
    // On a Cluster, a plain SUBSCRIBE on any node hears PUBLISHes made on every node.
    const sub = duplicateRedis(this.redis, 'live-state-subscriber', this.log);
    sub.on('message', (_channel: string, message: string) => {
      const load = parseLoad(message);
      if (load !== undefined) for (const listener of this.listeners) listener(load);
    });
    try {
      await sub.subscribe(this.channel);
    } catch (error) {
      sub.disconnect();
      this.subscribed = undefined; // the next subscribe tries again
      throw error;
    }
    return sub;
  }

  async close(): Promise<void> {
    this.listeners.clear();
    const sub = await this.subscribed?.catch(() => undefined);
    this.subscribed = undefined;
    await closeRedis(sub);
  }
}

/** A malformed report is ignored: the next one supersedes it. */
function parseLoad(json: string): LiveLoad | undefined {
  try {
    return JSON.parse(json) as LiveLoad;
  } catch {
    return undefined;
  }
}
