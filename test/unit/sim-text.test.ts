import { describe, expect, it } from 'vitest';
import { BatchEngine } from '../../sim/batch-engine.js';
import { formatPromValue, renderVllmMetrics } from '../../sim/sim-metrics.js';
import { parseChatRequest } from '../../sim/sim-requests.js';
import { embeddingOf, planOutput } from '../../sim/sim-text.js';
import type { PlanInput } from '../../sim/sim-text.js';

function text(input: PlanInput): { text: string; count: number; reason: string } {
  const p = planOutput(input);
  let out = '';
  for (let i = 0; i < p.count; i++) out += p.next();
  return { text: out, count: p.count, reason: p.finishReason };
}

const base: PlanInput = { seed: 1, model: 'm', promptKey: 'hello', echoWords: null, maxTokens: 64, ignoreEos: false };

describe('planOutput', () => {
  it('is deterministic for seed, model and prompt, and changes with each', () => {
    const a = text(base);
    expect(text(base)).toEqual(a);
    expect(text({ ...base, seed: 2 }).text).not.toBe(a.text);
    expect(text({ ...base, model: 'n' }).text).not.toBe(a.text);
    expect(text({ ...base, promptKey: 'bye' }).text).not.toBe(a.text);
    expect(a.text.split(' ')).toHaveLength(a.count);
  });

  it('truncates at max_tokens with finish reason length, and ignore_eos fills max_tokens', () => {
    const natural = text({ ...base, maxTokens: 1000 });
    expect(natural.reason).toBe('stop');
    const cut = text({ ...base, maxTokens: 5 });
    expect(cut).toMatchObject({ count: 5, reason: 'length' });
    expect(natural.text.startsWith(cut.text)).toBe(true);
    expect(text({ ...base, maxTokens: 500, ignoreEos: true })).toMatchObject({ count: 500, reason: 'length' });
  });

  it('echoes words and truncates them', () => {
    expect(text({ ...base, echoWords: ['a', 'b', 'c'] })).toEqual({ text: 'a b c', count: 3, reason: 'stop' });
    expect(text({ ...base, echoWords: ['a', 'b', 'c'], maxTokens: 2 })).toEqual({ text: 'a b', count: 2, reason: 'length' });
  });
});

describe('parseChatRequest', () => {
  it('echo mode replays every turn, counts text content parts and ceil(chars/4) tokens', () => {
    const r = parseChatRequest(
      {
        model: 'm',
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: [{ type: 'text', text: 'first turn' }, { type: 'image_url', image_url: { url: 'x' } }] },
          { role: 'assistant', content: null },
          { role: 'user', content: 'echo: say  it' },
        ],
      },
      ['m'],
    );
    expect(r.echoWords).toEqual(['be', 'brief', 'first', 'turn', 'say', 'it']);
    expect(r.promptTokens).toBe(Math.ceil(('be brief' + 'first turn' + 'echo: say  it').length / 4));
    expect(r.maxTokens).toBe(64);
  });

  it('prefers max_completion_tokens and rejects unknown models with vLLM NotFoundError', () => {
    const r = parseChatRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 9, max_completion_tokens: 3 }, ['m']);
    expect(r.maxTokens).toBe(3);
    expect(() => parseChatRequest({ model: 'x', messages: [{ role: 'user', content: 'x' }] }, ['m'])).toThrow(
      expect.objectContaining({ status: 404, type: 'NotFoundError', param: 'model', message: 'The model `x` does not exist.' }),
    );
    expect(() => parseChatRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }, ['m'])).toThrow(
      expect.objectContaining({ status: 400, param: 'max_tokens' }),
    );
  });
});

describe('embeddingOf', () => {
  it('is a deterministic unit vector of the requested length', () => {
    const v = embeddingOf(3, 'm', 'hi', 32);
    expect(v).toHaveLength(32);
    expect(Math.hypot(...v)).toBeCloseTo(1, 10);
    expect(embeddingOf(3, 'm', 'hi', 32)).toEqual(v);
    expect(embeddingOf(3, 'm', 'ho', 32)).not.toEqual(v);
  });
});

describe('formatPromValue', () => {
  it('prints numbers the way prometheus_client does in vllm.prom', () => {
    expect(formatPromValue(37)).toBe('37.0');
    expect(formatPromValue(0)).toBe('0.0');
    expect(formatPromValue(0.8312)).toBe('0.8312');
    expect(formatPromValue(969249)).toBe('969249.0');
    expect(formatPromValue(1393725)).toBe('1.393725e+06');
    expect(formatPromValue(1764181022.4512)).toBe('1.7641810224512e+09');
    expect(formatPromValue(1e6)).toBe('1e+06');
    expect(formatPromValue(0.00001)).toBe('1e-05');
    expect(formatPromValue(Number.POSITIVE_INFINITY)).toBe('+Inf');
  });

});

/** HELP/TYPE lines of shared/fixtures/vllm.prom, in its order, for the families the sim writes. */
const VLLM_HEADERS = [
  '# HELP vllm:num_requests_running Number of requests in model execution batches.',
  '# TYPE vllm:num_requests_running gauge',
  '# HELP vllm:num_requests_waiting Number of requests waiting to be processed.',
  '# TYPE vllm:num_requests_waiting gauge',
  '# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.',
  '# TYPE vllm:gpu_cache_usage_perc gauge',
  '# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.',
  '# TYPE vllm:kv_cache_usage_perc gauge',
  '# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.',
  '# TYPE vllm:num_preemptions_total counter',
  '# HELP vllm:num_preemptions_created Cumulative number of preemption from the engine.',
  '# TYPE vllm:num_preemptions_created gauge',
  '# HELP vllm:prompt_tokens_total Number of prefill tokens processed.',
  '# TYPE vllm:prompt_tokens_total counter',
  '# HELP vllm:prompt_tokens_created Number of prefill tokens processed.',
  '# TYPE vllm:prompt_tokens_created gauge',
  '# HELP vllm:generation_tokens_total Number of generation tokens processed.',
  '# TYPE vllm:generation_tokens_total counter',
  '# HELP vllm:generation_tokens_created Number of generation tokens processed.',
  '# TYPE vllm:generation_tokens_created gauge',
  '# HELP vllm:request_success_total Count of successfully processed requests.',
  '# TYPE vllm:request_success_total counter',
  '# HELP vllm:request_success_created Count of successfully processed requests.',
  '# TYPE vllm:request_success_created gauge',
];

describe('renderVllmMetrics', () => {
  it('writes the HELP/TYPE lines of vllm.prom, in its order, and its _created values', () => {
    const engine = new BatchEngine({ models: ['m'], tokensPerSecond: 1, maxSeqs: 1, ttftMs: 0 });
    const ours = renderVllmMetrics(engine.snapshot(), 1_764_181_022_451.2);
    expect(ours.split('\n').filter((l) => l.startsWith('# '))).toEqual(VLLM_HEADERS);
    expect(ours).toContain('vllm:request_success_created{model_name="m",engine="0",finished_reason="abort"} 1.7641810224512e+09');
  });
});
