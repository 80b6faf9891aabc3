import { describe, expect, it } from 'vitest';
import { MemoryRateLimiter } from '../../core/ratelimit/memory-rate-limiter.js';
import { LimiterUnavailableError, type AdmitResult, type KeyLimits, type RateLimiter } from '../../core/ratelimit/rate-limiter.js';
import { ResilientRateLimiter } from '../../core/ratelimit/resilient-rate-limiter.js';

/** A limiter whose store can be switched off, as Redis going away. */
class Switchable implements RateLimiter {
  up = true;
  private readonly inner = new MemoryRateLimiter();
  admit(k: string, l: KeyLimits, t: number): Promise<AdmitResult> {
    return this.up ? this.inner.admit(k, l, t) : Promise.reject(new Error('connect ECONNREFUSED'));
  }
  settle(k: string, l: KeyLimits, id: string, r: number, a: number): Promise<void> {
    return this.up ? this.inner.settle(k, l, id, r, a) : Promise.reject(new Error('connect ECONNREFUSED'));
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

function setup(mode: 'open' | 'closed') {
  const inner = new Switchable();
  const lines: string[] = [];
  let errors = 0;
  const log = { warn: (_o: object, m: string) => lines.push(`warn ${m}`), info: (_o: object, m: string) => lines.push(`info ${m}`) };
  const rl = new ResilientRateLimiter(inner, { mode, log, onError: () => errors++ });
  return { inner, rl, lines, errors: () => errors };
}

const l: KeyLimits = { requestsPerMinute: 1, tokensPerMinute: 0, maxConcurrent: 0 };

describe('ResilientRateLimiter', () => {
  it('fail-open admits while the store is down, logs the outage once, counts every failure, recovers', async () => {
    const { inner, rl, lines, errors } = setup('open');
    expect((await rl.admit('k', l, 1)).allowed).toBe(true);
    expect((await rl.admit('k', l, 1)).allowed).toBe(false); // limits enforced while up
    inner.up = false;
    for (let i = 0; i < 3; i++) expect((await rl.admit('k', l, 1)).allowed).toBe(true);
    await rl.settle('k', l, 'lease', 1, 1); // swallowed
    expect(errors()).toBe(4);
    expect(lines).toEqual(['warn rate limiter unavailable; failing open']);
    inner.up = true;
    expect((await rl.admit('k', l, 1)).allowed).toBe(false);
    expect(lines).toEqual(['warn rate limiter unavailable; failing open', 'info rate limiter available again']);
  });

  it('fail-closed refuses with LimiterUnavailableError while down', async () => {
    const { inner, rl } = setup('closed');
    inner.up = false;
    await expect(rl.admit('k', l, 1)).rejects.toBeInstanceOf(LimiterUnavailableError);
    inner.up = true;
    expect((await rl.admit('k', l, 1)).allowed).toBe(true);
  });
});
