/**
 * Per-API-key limits: a requests/min and a tokens/min token bucket plus a concurrency limit.
 * Both implementations (memory, Redis) share the arithmetic in bucket.ts and one contract suite
 * (test/integration/rate-limiter-limits.contract.test.ts).
 */
export interface KeyLimits {
  /** 0: unlimited for that dimension. */
  readonly requestsPerMinute: number;
  readonly tokensPerMinute: number;
  readonly maxConcurrent: number;
}

export type LimitReason = 'requests' | 'tokens' | 'concurrency';

/**
 * What OpenAI's x-ratelimit-* headers report. Reset: ms until the bucket is full again. For an
 * unlimited dimension (limit 0) all three numbers are 0: omit that dimension's headers.
 */
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
  /** When refused: the dimension that keeps the request out longest. */
  readonly reason: LimitReason | undefined;
  /**
   * When refused: ms until this request would fit in every dimension. Concurrency has no
   * predictable end, so it counts as CONCURRENCY_RETRY_MS; a cost above the whole tokens bucket
   * can never fit and gets OVERSIZE_RETRY_MS (see bucket.ts).
   */
  readonly retryAfterMs: number;
  /** When admitted: the concurrency lease to settle. */
  readonly leaseId: string | undefined;
}

export interface RateLimiter {
  /**
   * All or nothing: refills both buckets, prunes expired leases, then, if one request, `tokens`
   * tokens and a concurrency slot are all available, takes them; otherwise takes nothing.
   * Throws RangeError for a negative or non-finite `tokens` or limit.
   */
  admit(keyId: string, limits: KeyLimits, tokens: number): Promise<AdmitResult>;
  /**
   * The request ended: frees its lease and reconciles tokens (refunds `reserved - actual`, or
   * charges the excess; the bucket may go below zero, which then delays later requests).
   * Idempotent: only a lease still held is reconciled, so a repeated settle changes nothing.
   */
  settle(keyId: string, limits: KeyLimits, leaseId: string, reservedTokens: number, actualTokens: number): Promise<void>;
  close(): Promise<void>;
}
