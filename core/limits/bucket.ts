import type { KeyLimits, LimitReason, LimitState } from './rate-limiter.js';

/*
 * The arithmetic both limiters share. redis-rate-limiter.ts mirrors it line for line in Lua, with
 * the same operation order, so that both produce the same doubles and the same rounded numbers.
 */

/** Both buckets refill continuously: limit / WINDOW_MS per ms. */
export const WINDOW_MS = 60_000;
/** A concurrency-refused request retries after this estimate (leases have no predictable end). */
export const CONCURRENCY_RETRY_MS = 1000;
/**
 * A request costing more tokens than the whole tokens bucket can never be admitted. It is refused
 * with reason 'tokens' and this retry (one window) rather than a wait that never ends; the gateway
 * can tell it apart by `tokens > limitTokens` and say the request is too large.
 */
export const OVERSIZE_RETRY_MS = WINDOW_MS;
/** Leases of a gateway that died expire after this long. */
export const DEFAULT_LEASE_TTL_MS = 10 * 60_000;
/** A stored bucket expires this long after it would be full again (absent means full). */
export const BUCKET_TTL_MARGIN_MS = 1000;

/** A bucket's level (may be negative after an overcharge) at `atMs`. No bucket: a full one. */
export interface Bucket {
  readonly level: number;
  readonly atMs: number;
}

/** The bucket at `now`. A clock that stepped back refills nothing and keeps the later time. */
export function refill(bucket: Bucket | undefined, limit: number, now: number): Bucket {
  if (bucket === undefined) return { level: limit, atMs: now };
  const dt = Math.max(0, now - bucket.atMs);
  return { level: Math.min(limit, bucket.level + (dt * limit) / WINDOW_MS), atMs: Math.max(bucket.atMs, now) };
}

/** ms until the bucket is full again; 0 when it is (then it need not be stored). */
export function msUntilFull(level: number, limit: number): number {
  return limit > 0 ? Math.ceil(((limit - level) * WINDOW_MS) / limit) : 0;
}

export interface Refusal {
  readonly reason: LimitReason;
  readonly retryAfterMs: number;
}

/**
 * Decides admission for refilled levels. Of several short dimensions the one with the longest
 * wait is the reason (ties: requests, tokens, concurrency) and its wait is the retry, so a client
 * that waits that long finds every dimension ready (unless others took it first).
 */
export function refusal(limits: KeyLimits, requests: number, tokens: number, cost: number, openLeases: number): Refusal | undefined {
  const { requestsPerMinute: rpm, tokensPerMinute: tpm, maxConcurrent } = limits;
  if (tpm > 0 && cost > tpm) return { reason: 'tokens', retryAfterMs: OVERSIZE_RETRY_MS };
  let worst: Refusal | undefined;
  const consider = (reason: LimitReason, retryAfterMs: number): void => {
    if (worst === undefined || retryAfterMs > worst.retryAfterMs) worst = { reason, retryAfterMs };
  };
  if (rpm > 0 && requests < 1) consider('requests', Math.ceil(((1 - requests) * WINDOW_MS) / rpm));
  if (tpm > 0 && tokens < cost) consider('tokens', Math.ceil(((cost - tokens) * WINDOW_MS) / tpm));
  if (maxConcurrent > 0 && openLeases >= maxConcurrent) consider('concurrency', CONCURRENCY_RETRY_MS);
  return worst;
}

/** Header numbers for refilled levels; an unlimited dimension reports zeros. */
export function limitState(limits: KeyLimits, requests: number, tokens: number): LimitState {
  const rpm = limits.requestsPerMinute;
  const tpm = limits.tokensPerMinute;
  return {
    limitRequests: rpm,
    remainingRequests: rpm > 0 ? Math.floor(Math.max(0, requests)) : 0,
    resetRequestsMs: msUntilFull(requests, rpm),
    limitTokens: tpm,
    remainingTokens: tpm > 0 ? Math.floor(Math.max(0, tokens)) : 0,
    resetTokensMs: msUntilFull(tokens, tpm),
  };
}

/** Garbage in would reach Redis as "NaN" and fail there like an outage; refuse it here instead. */
export function checkArgs(limits: KeyLimits, ...amounts: number[]): void {
  for (const n of [limits.requestsPerMinute, limits.tokensPerMinute, limits.maxConcurrent, ...amounts]) {
    if (!Number.isFinite(n) || n < 0) throw new RangeError(`rate limit argument must be a finite number >= 0, got ${n}`);
  }
}
