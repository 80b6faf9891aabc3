/**
 * Per-API-key limits: a requests/min and a tokens/min token bucket plus a concurrency limit.
 * Both implementations (memory, Redis) share these semantics and the contract tests in
 * test/integration/rate-limiter.contract.test.ts.
 */
export interface KeyLimits {
  /** 0: unlimited for that dimension. */
  readonly requestsPerMinute: number;
  readonly tokensPerMinute: number;
  readonly maxConcurrent: number;
}

export type LimitReason = 'requests' | 'tokens' | 'concurrency';

/** What OpenAI's x-ratelimit-* headers report. Reset: ms until the bucket is full again. */
export interface LimitState {
  readonly limitRequests: number;
  readonly remainingRequests: number;
  readonly resetRequestsMs: number;
  readonly limitTokens: number;
  readonly remainingTokens: number;
  readonly resetTokensMs: number;
}

export interface AdmitResult extends LimitState {
  readonly allowed: boolean;
  readonly reason: LimitReason | undefined;
  /** When refused: how long until this request would fit. */
  readonly retryAfterMs: number;
  /** When admitted: the concurrency lease to settle. */
  readonly leaseId: string | undefined;
}

export interface RateLimiter {
  /**
   * All or nothing: refills both buckets, then, if one request, `tokens` tokens and a concurrency
   * slot are all available, takes them; otherwise takes nothing.
   */
  admit(keyId: string, limits: KeyLimits, tokens: number): Promise<AdmitResult>;
  /**
   * The request ended: frees its lease and reconciles tokens (refunds `reserved - actual`, or
   * charges the excess; the bucket may go below zero, which then delays later requests).
   */
  settle(keyId: string, limits: KeyLimits, leaseId: string, reservedTokens: number, actualTokens: number): Promise<void>;
  close(): Promise<void>;
}

/** The limiter's store is unreachable and the configured failure mode is `closed`. */
export class LimiterUnavailableError extends Error {
  override readonly name = 'LimiterUnavailableError';
}

/** A concurrency-refused request retries after this estimate (leases have no predictable end). */
export const CONCURRENCY_RETRY_MS = 1000;
/** Leases of a gateway that died expire after this long. */
export const DEFAULT_LEASE_TTL_MS = 10 * 60_000;

/**
 * The bucket arithmetic both implementations share (the Redis script mirrors it in Lua).
 * Buckets hold fractional tokens and refill continuously at limit/60 000 per ms.
 */
export interface BucketState {
  requests: number;
  tokens: number;
  atMs: number;
}

export function refill(state: BucketState, limits: KeyLimits, now: number): void {
  const dt = Math.max(0, now - state.atMs);
  if (limits.requestsPerMinute > 0) state.requests = Math.min(limits.requestsPerMinute, state.requests + (dt * limits.requestsPerMinute) / 60_000);
  if (limits.tokensPerMinute > 0) state.tokens = Math.min(limits.tokensPerMinute, state.tokens + (dt * limits.tokensPerMinute) / 60_000);
  state.atMs = now;
}

/** Decides admission for a refilled state; returns the reason and wait, or undefined to admit. */
export function refusal(state: BucketState, limits: KeyLimits, cost: number, openLeases: number): { reason: LimitReason; retryAfterMs: number } | undefined {
  if (limits.requestsPerMinute > 0 && state.requests < 1) {
    return { reason: 'requests', retryAfterMs: ((1 - state.requests) * 60_000) / limits.requestsPerMinute };
  }
  if (limits.tokensPerMinute > 0) {
    // Larger than the whole bucket: it can never fit; say so with a minute's wait, not forever.
    if (cost > limits.tokensPerMinute) return { reason: 'tokens', retryAfterMs: 60_000 };
    if (state.tokens < cost) return { reason: 'tokens', retryAfterMs: ((cost - state.tokens) * 60_000) / limits.tokensPerMinute };
  }
  if (limits.maxConcurrent > 0 && openLeases >= limits.maxConcurrent) return { reason: 'concurrency', retryAfterMs: CONCURRENCY_RETRY_MS };
  return undefined;
}

export function limitState(state: BucketState, limits: KeyLimits): LimitState {
  const rpm = limits.requestsPerMinute;
  const tpm = limits.tokensPerMinute;
  return {
    limitRequests: rpm,
    remainingRequests: rpm > 0 ? Math.max(0, Math.floor(state.requests)) : 0,
    resetRequestsMs: rpm > 0 ? Math.ceil(((rpm - state.requests) * 60_000) / rpm) : 0,
    limitTokens: tpm,
    remainingTokens: tpm > 0 ? Math.max(0, Math.floor(state.tokens)) : 0,
    resetTokensMs: tpm > 0 ? Math.ceil(((tpm - state.tokens) * 60_000) / tpm) : 0,
  };
}
