import type { ServerResponse } from 'node:http';
import type { SimFailures } from './sim-options.js';
import { sendVllmError } from './sim-http.js';

/** What the scripted failures do to one request. */
export interface FailurePlan {
  /** 0 for none, else the status answered instead of inference. */
  readonly status: 0 | 429 | 500 | 503;
  readonly stallMs: number;
  readonly drop: boolean;
}

/** Tokens a dropped stream delivers before its connection is destroyed (fewer if it is shorter). */
export const DROP_AFTER_TOKENS = 3;

/**
 * Three draws per request, whatever the rates, so a seed gives the same pattern for the same
 * request order even when only some flags change.
 */
export function drawFailure(rng: () => number, f: SimFailures): FailurePlan {
  const kind = rng();
  const stall = rng();
  const drop = rng();
  let status: FailurePlan['status'] = 0;
  if (kind < f.errorRate) status = 500;
  else if (kind < f.errorRate + f.rate429) status = 429;
  else if (kind < f.errorRate + f.rate429 + f.rate503) status = 503;
  return {
    status,
    stallMs: f.stallMs > 0 && stall < f.stallRate ? f.stallMs : 0,
    drop: drop < f.dropRate,
  };
}

export function sendFailure(res: ServerResponse, status: 429 | 500 | 503): void {
  switch (status) {
    case 429:
      sendVllmError(res, 429, 'RateLimitError', 'Too many requests: the simulated engine is rate limiting.', null, {
        'retry-after': '1',
      });
      return;
    case 500:
      sendVllmError(res, 500, 'InternalServerError', 'Simulated engine failure.');
      return;
    case 503:
      sendVllmError(res, 503, 'ServiceUnavailableError', 'The simulated engine is overloaded.');
      return;
  }
}

/** Waits `ms` unless the connection closes first; resolves either way. */
export function stall(ms: number, res: ServerResponse, timers: Set<NodeJS.Timeout>): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      timers.delete(timer);
      res.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    timers.add(timer);
    res.once('close', done);
  });
}
