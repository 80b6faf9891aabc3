import { describe, expect, it } from 'vitest';
import { CostEstimator, workTokens } from '../../scheduler/capacity/cost-estimator.js';

describe('CostEstimator', () => {
  it('starts at 4 bytes per token plus max_tokens, or the configured default without it', () => {
    const c = new CostEstimator(512);
    expect(c.estimate('m', 400, 100)).toEqual({ promptTokens: 100, outputTokens: 100, tokens: 200, work: 110 });
    expect(c.estimate('m', 400, undefined).outputTokens).toBe(512);
    expect(c.estimate('m', 400, null).outputTokens).toBe(512);
  });

  it("learns the model's bytes per prompt token from real usage", () => {
    const c = new CostEstimator(512);
    // This model's tokenizer: 8 bytes of request body per prompt token.
    for (let i = 0; i < 100; i++) c.observe('m', 8000, 1000, 10, true);
    expect(c.estimate('m', 8000, 10).promptTokens).toBeGreaterThan(990);
    expect(c.estimate('m', 8000, 10).promptTokens).toBeLessThan(1010);
    // Another model keeps its own estimate.
    expect(c.estimate('other', 8000, 10).promptTokens).toBe(2000);
  });

  it("uses the model's mean output when requests set no max_tokens, once there is history", () => {
    const c = new CostEstimator(512);
    for (let i = 0; i < 19; i++) c.observe('m', 400, 100, 40, false);
    expect(c.estimate('m', 400, undefined).outputTokens).toBe(512);
    c.observe('m', 400, 100, 40, false);
    expect(c.estimate('m', 400, undefined).outputTokens).toBe(40);
    // Requests that set max_tokens do not teach the default.
    for (let i = 0; i < 50; i++) c.observe('m', 400, 100, 4000, true);
    expect(c.estimate('m', 400, undefined).outputTokens).toBe(40);
  });

  it('work tokens count a prompt token as a tenth of an output token', () => {
    expect(workTokens(1000, 200)).toBe(300);
    expect(workTokens(5, 1)).toBe(2);
  });
});
