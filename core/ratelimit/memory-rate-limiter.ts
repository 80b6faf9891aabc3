import { randomBytes } from 'node:crypto';
import {
  DEFAULT_LEASE_TTL_MS,
  limitState,
  refill,
  refusal,
  type AdmitResult,
  type BucketState,
  type KeyLimits,
  type RateLimiter,
} from './rate-limiter.js';

interface KeyState extends BucketState {
  /** lease id → expiry (ms). */
  readonly leases: Map<string, number>;
}

/** Limits for a single process (no Redis configured): the same arithmetic, in a Map. */
export class MemoryRateLimiter implements RateLimiter {
  private readonly keys = new Map<string, KeyState>();
  private readonly now: () => number;
  private readonly leaseTtlMs: number;
  private readonly leaseTag = `${randomBytes(4).toString('hex')}.`;
  private leaseCounter = 0;

  constructor(opts: { now?: () => number; leaseTtlMs?: number } = {}) {
    this.now = opts.now ?? Date.now;
    this.leaseTtlMs = opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
  }

  private state(keyId: string, limits: KeyLimits, now: number): KeyState {
    let s = this.keys.get(keyId);
    if (s === undefined) {
      s = { requests: limits.requestsPerMinute, tokens: limits.tokensPerMinute, atMs: now, leases: new Map() };
      this.keys.set(keyId, s);
    }
    refill(s, limits, now);
    // Expired leases matter only when the limit is reached: prune then, not on every call.
    if (limits.maxConcurrent > 0 && s.leases.size >= limits.maxConcurrent) {
      for (const [id, expiry] of s.leases) if (expiry <= now) s.leases.delete(id);
    }
    return s;
  }

  async admit(keyId: string, limits: KeyLimits, tokens: number): Promise<AdmitResult> {
    const now = this.now();
    const s = this.state(keyId, limits, now);
    const refused = refusal(s, limits, tokens, s.leases.size);
    if (refused !== undefined) return { ...limitState(s, limits), allowed: false, ...refused, leaseId: undefined };
    s.requests -= 1;
    s.tokens -= tokens;
    const leaseId = `${this.leaseTag}${(++this.leaseCounter).toString(36)}`;
    // Without a concurrency limit there is nothing to count: the lease is not tracked.
    if (limits.maxConcurrent > 0) s.leases.set(leaseId, now + this.leaseTtlMs);
    return { ...limitState(s, limits), allowed: true, reason: undefined, retryAfterMs: 0, leaseId };
  }

  async settle(keyId: string, limits: KeyLimits, leaseId: string, reservedTokens: number, actualTokens: number): Promise<void> {
    const s = this.state(keyId, limits, this.now());
    s.leases.delete(leaseId);
    if (limits.tokensPerMinute > 0) s.tokens = Math.min(limits.tokensPerMinute, s.tokens + reservedTokens - actualTokens);
  }

  async close(): Promise<void> {
    this.keys.clear();
  }
}
