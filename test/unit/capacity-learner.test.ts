import { describe, expect, it } from 'vitest';
import { CapacityLearner } from '../../scheduler/capacity-learner.js';

const declared = { tokensPerSecond: 1000, maxSequences: 8 };

describe('CapacityLearner', () => {
  it('keeps the declared prior until the node is seen busy', () => {
    const l = new CapacityLearner();
    l.observe('n', declared, { generationTokensTotal: 0, running: 1, atMs: 0 });
    // 5000 tokens/s, but with 1 of 8 slots running: not evidence of capacity.
    expect(l.observe('n', declared, { generationTokensTotal: 5000, running: 1, atMs: 1000 })).toEqual({ tokensPerSecond: 1000, observations: 0 });
  });

  it('moves toward the observed rate while busy, smoothed', () => {
    const l = new CapacityLearner({ alpha: 0.5 });
    l.observe('n', declared, { generationTokensTotal: 0, running: 8, atMs: 0 });
    expect(l.observe('n', declared, { generationTokensTotal: 2000, running: 8, atMs: 1000 }).tokensPerSecond).toBe(1500);
    expect(l.observe('n', declared, { generationTokensTotal: 4000, running: 7, atMs: 2000 }).tokensPerSecond).toBe(1750);
    expect(l.learned('n')).toEqual({ tokensPerSecond: 1750, observations: 2 });
  });

  it('ignores counter resets and missing counters', () => {
    const l = new CapacityLearner({ alpha: 1 });
    l.observe('n', declared, { generationTokensTotal: 10_000, running: 8, atMs: 0 });
    expect(l.observe('n', declared, { generationTokensTotal: 50, running: 8, atMs: 1000 }).tokensPerSecond).toBe(1000); // engine restarted
    expect(l.observe('n', declared, { generationTokensTotal: undefined, running: 8, atMs: 2000 }).tokensPerSecond).toBe(1000);
    expect(l.observe('n', declared, { generationTokensTotal: 650, running: 8, atMs: 3000 }).tokensPerSecond).toBe(1000); // no previous reading
    expect(l.observe('n', declared, { generationTokensTotal: 1250, running: 8, atMs: 4000 }).tokensPerSecond).toBe(600);
  });
});
