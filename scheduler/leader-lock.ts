import { randomBytes } from 'node:crypto';
import type { RedisClient } from '../core/redis-connection.js';

/** Which scheduler replica runs the region-wide jobs (ghost cleanup, the no-agent count). */
export interface LeaderElection {
  /** True while this replica holds the lease (judged on its own clock, with a safety margin). */
  isLeader(): boolean;
  /** Acquires or renews the lease; resolves to whether this replica leads now. */
  tick(): Promise<boolean>;
  /** Gives the lease up at once (if held), so another replica takes over on its next tick. */
  release(): Promise<void>;
}

/** One process, no Redis: the only scheduler leads. */
export const soleLeader: LeaderElection = {
  isLeader: () => true,
  tick: async () => true,
  release: async () => undefined,
};

// KEYS[1] lock key; ARGV[1] this replica's id, ARGV[2] lease ms. SET NX PX takes a free lock; the
// holder renews it with PEXPIRE. Returns 1 when this replica holds the lock afterwards, else 0.
const ACQUIRE = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`;

// KEYS[1] lock key; ARGV[1] this replica's id. Deletes the lock only if this replica holds it.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export interface RedisLeaderLockOptions {
  readonly redis: RedisClient;
  /** e.g. `${prefix}scheduler:leader`; one per region's Redis. */
  readonly key: string;
  /** How long a lease lasts without renewal; a crashed leader is replaced within it. */
  readonly leaseMs?: number;
  readonly now?: () => number;
}

/**
 * Leader election over the region's Redis: a lock key with a lease, renewed by its holder every
 * `leaseMs / 3` (the caller ticks). The holder believes it leads only until `leaseMs / 2` after the
 * start of its last successful renewal, so with clocks that drift less than that between replicas
 * two replicas never both believe they lead. A Redis outage therefore ends leadership everywhere
 * (the jobs it guards wait) rather than electing two leaders.
 */
export class RedisLeaderLock implements LeaderElection {
  readonly id = `${process.pid}-${randomBytes(6).toString('hex')}`;
  readonly leaseMs: number;
  private leaderUntil = 0;
  private readonly now: () => number;

  constructor(private readonly opts: RedisLeaderLockOptions) {
    this.leaseMs = opts.leaseMs ?? 15_000;
    this.now = opts.now ?? Date.now;
  }

  isLeader(): boolean {
    return this.now() < this.leaderUntil;
  }

  async tick(): Promise<boolean> {
    const started = this.now();
    try {
      const held = await this.opts.redis.eval(ACQUIRE, 1, this.opts.key, this.id, this.leaseMs);
      this.leaderUntil = held === 1 ? started + this.leaseMs / 2 : 0;
    } catch {
      // Unknown whether the renewal landed: keep what was believed until it runs out.
    }
    return this.isLeader();
  }

  async release(): Promise<void> {
    this.leaderUntil = 0;
    await this.opts.redis.eval(RELEASE, 1, this.opts.key, this.id).catch(() => undefined);
  }
}
