import { LimiterUnavailableError, type AdmitResult, type KeyLimits, type RateLimiter } from './rate-limiter.js';

export type FailureMode = 'open' | 'closed';

interface Log {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/**
 * What happens when the limiter's Redis is unreachable: `open` admits (no limits until it is back),
 * `closed` refuses with LimiterUnavailableError (the gateway answers 503). Either way the outage is
 * logged once when it starts and once when it ends, counted through `onError`, and never crashes.
 */
export class ResilientRateLimiter implements RateLimiter {
  private down = false;

  constructor(
    private readonly inner: RateLimiter,
    private readonly opts: { mode: FailureMode; log: Log; onError?: () => void },
  ) {}

  async admit(keyId: string, limits: KeyLimits, tokens: number): Promise<AdmitResult> {
    try {
      const result = await this.inner.admit(keyId, limits, tokens);
      this.recovered();
      return result;
    } catch (err) {
      this.failed(err);
      if (this.opts.mode === 'closed') throw new LimiterUnavailableError('rate limiter unavailable', { cause: err });
      return {
        allowed: true,
        reason: undefined,
        retryAfterMs: 0,
        leaseId: undefined,
        limitRequests: limits.requestsPerMinute,
        remainingRequests: limits.requestsPerMinute,
        resetRequestsMs: 0,
        limitTokens: limits.tokensPerMinute,
        remainingTokens: limits.tokensPerMinute,
        resetTokensMs: 0,
      };
    }
  }

  async settle(keyId: string, limits: KeyLimits, leaseId: string, reservedTokens: number, actualTokens: number): Promise<void> {
    try {
      await this.inner.settle(keyId, limits, leaseId, reservedTokens, actualTokens);
      this.recovered();
    } catch (err) {
      // The lease expires by itself; the token difference is lost, which only errs on one request.
      this.failed(err);
    }
  }

  async close(): Promise<void> {
    await this.inner.close();
  }

  private failed(err: unknown): void {
    this.opts.onError?.();
    if (this.down) return;
    this.down = true;
    this.opts.log.warn({ err: (err as Error).message, mode: this.opts.mode }, 'rate limiter unavailable; failing ' + this.opts.mode);
  }

  private recovered(): void {
    if (!this.down) return;
    this.down = false;
    this.opts.log.info({}, 'rate limiter available again');
  }
}
