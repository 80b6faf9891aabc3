import type { AdmitResult, KeyLimits, RateLimiter } from './rate-limiter.js';

export type FailureMode = 'open' | 'closed';

/** The lease of a request admitted while the limiter was down; settling it is a no-op. */
export const FAIL_OPEN_LEASE = 'failopen';

/** The limiter's store is unreachable and the failure mode is `closed`: the gateway answers 503. */
export class LimiterUnavailableError extends Error {
  override readonly name = 'LimiterUnavailableError';
}

interface Log {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/**
 * What happens when the inner limiter throws (its Redis is unreachable): `open` admits without
 * limits until it is back, `closed` throws LimiterUnavailableError. Every failure calls `onError`
 * (a counter); an outage is logged once when it starts and once when it ends. A RangeError is a
 * caller's bug, not an outage, and is rethrown as is. settle() never throws: a lost settle costs
 * one lease until its TTL and one request's token difference.
 */
export class ResilientRateLimiter implements RateLimiter {
  private outage: { readonly sinceMs: number; failures: number } | undefined;

  constructor(
    private readonly inner: RateLimiter,
    private readonly opts: { mode: FailureMode; log: Log; onError?: () => void },
  ) {}

  async admit(keyId: string, limits: KeyLimits, tokens: number): Promise<AdmitResult> {
    let result: AdmitResult;
    try {
      result = await this.inner.admit(keyId, limits, tokens);
    } catch (err) {
      if (err instanceof RangeError) throw err;
      this.failed(err);
      if (this.opts.mode === 'closed') throw new LimiterUnavailableError('rate limiter unavailable', { cause: err });
      return failOpen(limits);
    }
    this.recovered();
    return result;
  }

  async settle(keyId: string, limits: KeyLimits, leaseId: string, reservedTokens: number, actualTokens: number): Promise<void> {
    // Admitted during an outage: nothing was taken, so nothing is given back or charged.
    if (leaseId === FAIL_OPEN_LEASE) return;
    try {
      await this.inner.settle(keyId, limits, leaseId, reservedTokens, actualTokens);
    } catch (err) {
      if (err instanceof RangeError) {
        this.opts.log.warn({ err: err.message }, 'rate limit settle refused its arguments');
        return;
      }
      this.failed(err);
      return;
    }
    this.recovered();
  }

  async close(): Promise<void> {
    await this.inner.close();
  }

  private failed(err: unknown): void {
    this.opts.onError?.();
    if (this.outage !== undefined) {
      this.outage.failures += 1;
      return;
    }
    this.outage = { sinceMs: Date.now(), failures: 1 };
    const message = err instanceof Error ? err.message : String(err);
    this.opts.log.warn({ err: message, mode: this.opts.mode }, 'rate limiter unavailable');
  }

  private recovered(): void {
    if (this.outage === undefined) return;
    const { sinceMs, failures } = this.outage;
    this.outage = undefined;
    this.opts.log.info({ outageMs: Date.now() - sinceMs, failures }, 'rate limiter available again');
  }
}

/** Admitted without limits; remaining = limit so clients see no pressure they cannot trust. */
function failOpen(limits: KeyLimits): AdmitResult {
  return {
    allowed: true,
    reason: undefined,
    retryAfterMs: 0,
    leaseId: FAIL_OPEN_LEASE,
    limitRequests: limits.requestsPerMinute,
    remainingRequests: limits.requestsPerMinute,
    resetRequestsMs: 0,
    limitTokens: limits.tokensPerMinute,
    remainingTokens: limits.tokensPerMinute,
    resetTokensMs: 0,
  };
}
