import { randomUUID } from 'node:crypto';
import { checkArgs, DEFAULT_LEASE_TTL_MS, limitState, msUntilFull, refill, refusal, type Bucket } from './bucket.js';
import type { AdmitResult, KeyLimits, RateLimiter } from './rate-limiter.js';

interface KeyState {
  /** Absent: full (as an expired Redis hash). */
  req: Bucket | undefined;
  tok: Bucket | undefined;
  /** lease id → expiry ms. */
  readonly leases: Map<string, number>;
  /** When every bucket is full again; with no leases left the entry can go. */
  fullAtMs: number;
}

/** Sweep idle keys every this many writes, so the map stays as small as the live key set. */
const SWEEP_EVERY = 1024;

/**
 * Limits for a single process (no Redis configured): the arithmetic of bucket.ts over a Map, with
 * the same numbers as the Redis script. Operations are synchronous inside, hence atomic.
 */
export class MemoryRateLimiter implements RateLimiter {
  private readonly keys = new Map<string, KeyState>();
  private readonly now: () => number;
  private readonly leaseTtlMs: number;
  private writes = 0;

  constructor(opts: { now?: () => number; leaseTtlMs?: number } = {}) {
    this.now = opts.now ?? Date.now;
    this.leaseTtlMs = opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
  }

  async admit(keyId: string, limits: KeyLimits, tokens: number): Promise<AdmitResult> {
    checkArgs(limits, tokens);
    const now = this.now();
    const s = this.state(keyId, now);
    const { requestsPerMinute: rpm, tokensPerMinute: tpm } = limits;
    let req = rpm > 0 ? refill(s.req, rpm, now) : undefined;
    let tok = tpm > 0 ? refill(s.tok, tpm, now) : undefined;
    const refused = refusal(limits, req?.level ?? 0, tok?.level ?? 0, tokens, s.leases.size);
    if (refused !== undefined) {
      // Nothing taken, nothing written: the stored buckets refill to the same levels later.
      return { ...limitState(limits, req?.level ?? 0, tok?.level ?? 0), allowed: false, ...refused, leaseId: undefined };
    }
    // An unlimited dimension leaves its stored bucket alone, as the script does.
    if (req !== undefined) {
      req = { level: req.level - 1, atMs: req.atMs };
      s.req = this.stored(req, rpm, s, now);
    }
    if (tok !== undefined) {
      tok = { level: tok.level - tokens, atMs: tok.atMs };
      s.tok = this.stored(tok, tpm, s, now);
    }
    const leaseId = randomUUID();
    s.leases.set(leaseId, now + this.leaseTtlMs);
    this.wrote(now);
    return { ...limitState(limits, req?.level ?? 0, tok?.level ?? 0), allowed: true, reason: undefined, retryAfterMs: 0, leaseId };
  }

  async settle(keyId: string, limits: KeyLimits, leaseId: string, reservedTokens: number, actualTokens: number): Promise<void> {
    checkArgs(limits, reservedTokens, actualTokens);
    const now = this.now();
    const s = this.keys.get(keyId);
    if (s === undefined) return;
    pruneLeases(s, now);
    if (!s.leases.delete(leaseId)) return;
    const tpm = limits.tokensPerMinute;
    const delta = reservedTokens - actualTokens;
    if (tpm > 0 && delta !== 0) {
      const tok = refill(s.tok, tpm, now);
      s.tok = this.stored({ level: Math.min(tpm, tok.level + delta), atMs: tok.atMs }, tpm, s, now);
    }
    this.wrote(now);
  }

  async close(): Promise<void> {
    this.keys.clear();
  }

  private state(keyId: string, now: number): KeyState {
    let s = this.keys.get(keyId);
    if (s === undefined) {
      s = { req: undefined, tok: undefined, leases: new Map(), fullAtMs: now };
      this.keys.set(keyId, s);
    }
    pruneLeases(s, now);
    return s;
  }

  /** What the Redis script stores: nothing for a full bucket (absent reads as full). */
  private stored(b: Bucket, limit: number, s: KeyState, now: number): Bucket | undefined {
    const untilFull = msUntilFull(b.level, limit);
    s.fullAtMs = Math.max(s.fullAtMs, now + untilFull);
    return untilFull > 0 ? b : undefined;
  }

  private wrote(now: number): void {
    if (++this.writes % SWEEP_EVERY !== 0) return;
    for (const [keyId, s] of this.keys) {
      pruneLeases(s, now);
      if (s.leases.size === 0 && s.fullAtMs <= now) this.keys.delete(keyId);
    }
  }
}

function pruneLeases(s: KeyState, now: number): void {
  for (const [id, expiry] of s.leases) if (expiry <= now) s.leases.delete(id);
}
