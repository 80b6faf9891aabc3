import { describe, expect, it } from 'vitest';
import { counterRate, TokenRateTracker } from '../../gpu-agent/probes/token-rate.js';

describe('counterRate', () => {
  it('is the increase per second', () => {
    expect(counterRate({ value: 1000, atMs: 0 }, { value: 1500, atMs: 2000 })).toBe(250);
    expect(counterRate({ value: 1000, atMs: 0 }, { value: 1000, atMs: 2000 })).toBe(0);
  });

  it('treats a drop as a restart and counts the new value as the increase', () => {
    expect(counterRate({ value: 90_000, atMs: 0 }, { value: 400, atMs: 4000 })).toBe(100);
  });

  it('is null without a previous reading, with a missing value, or when time did not advance', () => {
    expect(counterRate(undefined, { value: 5, atMs: 1 })).toBeNull();
    expect(counterRate({ value: null, atMs: 0 }, { value: 5, atMs: 1000 })).toBeNull();
    expect(counterRate({ value: 5, atMs: 0 }, { value: null, atMs: 1000 })).toBeNull();
    expect(counterRate({ value: 5, atMs: 1000 }, { value: 9, atMs: 1000 })).toBeNull();
    expect(counterRate({ value: 5, atMs: 2000 }, { value: 9, atMs: 1000 })).toBeNull();
  });
});

describe('TokenRateTracker', () => {
  const totals = (p: number | null, g: number | null): { promptTokensTotal: number | null; generationTokensTotal: number | null } => ({
    promptTokensTotal: p,
    generationTokensTotal: g,
  });

  it('rates prompt and generation counters independently over successive samples', () => {
    const t = new TokenRateTracker();
    expect(t.update(totals(100, 10), 0)).toEqual({ promptTokensPerSecond: null, generationTokensPerSecond: null });
    expect(t.update(totals(300, 60), 1000)).toEqual({ promptTokensPerSecond: 200, generationTokensPerSecond: 50 });
    expect(t.update(totals(20, 70), 2000)).toEqual({ promptTokensPerSecond: 20, generationTokensPerSecond: 10 });
  });

  it('bridges a missing reading: the next rate spans the gap from the last good one', () => {
    const t = new TokenRateTracker();
    t.update(totals(0, 0), 0);
    expect(t.update(totals(null, 100), 1000)).toEqual({ promptTokensPerSecond: null, generationTokensPerSecond: 100 });
    expect(t.update(totals(400, 100), 2000)).toEqual({ promptTokensPerSecond: 200, generationTokensPerSecond: 0 });
  });

  it('an engine that never reports tokens (Ollama) always yields null', () => {
    const t = new TokenRateTracker();
    t.update(totals(null, null), 0);
    expect(t.update(totals(null, null), 1000)).toEqual({ promptTokensPerSecond: null, generationTokensPerSecond: null });
  });

  it('reset() drops the baselines', () => {
    const t = new TokenRateTracker();
    t.update(totals(100, 100), 0);
    t.reset();
    expect(t.update(totals(200, 200), 1000)).toEqual({ promptTokensPerSecond: null, generationTokensPerSecond: null });
  });
});
