import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { llamaCppSample, parseLlamaCppSlots } from '../../gpu-agent/probes/llamacpp.js';
import { ollamaSample } from '../../gpu-agent/probes/ollama.js';
import { parsePromText } from '../../gpu-agent/probes/prom-text.js';
import { sglangSample } from '../../gpu-agent/probes/sglang.js';
import { tgiSample } from '../../gpu-agent/probes/tgi.js';
import { vllmSample } from '../../gpu-agent/probes/vllm.js';

const text = (name: string): string => readFileSync(`test/fixtures/probes/${name}`, 'utf8');
const prom = (name: string): ReturnType<typeof parsePromText> => parsePromText(text(name));
const json = (name: string): unknown => JSON.parse(text(name));

describe('vllmSample', () => {
  it('reads the V1 scrape, exponent-notation counters included', () => {
    expect(vllmSample(prom('vllm.prom'))).toEqual({
      engine: 'vllm',
      running: 37,
      waiting: 5,
      kvCacheUsage: 0.8312,
      promptTokensTotal: 1_393_725,
      generationTokensTotal: 969_249,
    });
  });

  it('sums counts over models and engines, averages KV usage, and falls back to the deprecated gauge', () => {
    const s = parsePromText(
      [
        'vllm:num_requests_running{model_name="a",engine="0"} 3',
        'vllm:num_requests_running{model_name="a",engine="1"} 4',
        'vllm:num_requests_waiting{model_name="a",engine="0"} 1',
        'vllm:num_requests_waiting{model_name="a",engine="1"} 0',
        'vllm:gpu_cache_usage_perc{model_name="a",engine="0"} 0.2',
        'vllm:gpu_cache_usage_perc{model_name="a",engine="1"} 0.6',
        'vllm:prompt_tokens_total{model_name="a",engine="0"} 1e3',
        'vllm:prompt_tokens_total{model_name="a",engine="1"} 2e3',
      ].join('\n'),
    );
    const sample = vllmSample(s);
    expect(sample).toMatchObject({ running: 7, waiting: 1, promptTokensTotal: 3000, generationTokensTotal: null });
    expect(sample.kvCacheUsage).toBeCloseTo(0.4);
  });

  it('prefers vllm:kv_cache_usage_perc over the deprecated name when both are present', () => {
    const s = parsePromText('vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.1\n');
    expect(vllmSample(s).kvCacheUsage).toBe(0.1);
  });

  it('says null, not 0, for an empty scrape', () => {
    expect(vllmSample([])).toEqual({
      engine: 'vllm',
      running: null,
      waiting: null,
      kvCacheUsage: null,
      promptTokensTotal: null,
      generationTokensTotal: null,
    });
  });
});

describe('sglangSample', () => {
  it('reads the scrape', () => {
    expect(sglangSample(prom('sglang.prom'))).toEqual({
      engine: 'sglang',
      running: 24,
      waiting: 3,
      kvCacheUsage: 0.43,
      promptTokensTotal: 8_123_411,
      generationTokensTotal: 1_540_220,
    });
  });

  it('counts a tensor-parallel batch once and sums data-parallel ranks', () => {
    const line = (dp: number, tp: number, v: number): string =>
      `sglang:num_running_reqs{dp_rank="${dp}",model_name="m",pp_rank="0",tp_rank="${tp}"} ${v}`;
    const s = parsePromText([line(0, 0, 5), line(0, 1, 5), line(1, 0, 7), line(1, 1, 7)].join('\n'));
    expect(sglangSample(s).running).toBe(12);
  });
});

describe('llamaCppSample', () => {
  it('reads /metrics: processing is running, deferred is waiting; no KV ratio in this build', () => {
    expect(llamaCppSample(prom('llamacpp.prom'))).toEqual({
      engine: 'llamacpp',
      running: 2,
      waiting: 2,
      kvCacheUsage: null,
      promptTokensTotal: 180,
      generationTokensTotal: 7368,
    });
  });

  it('reads kv_cache_usage_ratio from builds that export it', () => {
    expect(llamaCppSample(parsePromText('llamacpp:kv_cache_usage_ratio 0.25\n')).kvCacheUsage).toBe(0.25);
  });

  it('parses /slots, current and pre-is_processing formats', () => {
    expect(parseLlamaCppSlots(json('llamacpp-slots.json'))).toEqual({ total: 2, processing: 0 });
    expect(parseLlamaCppSlots([{ id: 0, is_processing: true }, { id: 1, is_processing: false }])).toEqual({
      total: 2,
      processing: 1,
    });
    expect(parseLlamaCppSlots([{ id: 0, state: 1 }, { id: 1, state: 0 }, { id: 2, state: 1 }])).toEqual({
      total: 3,
      processing: 2,
    });
    expect(parseLlamaCppSlots({ error: { code: 501 } })).toBeUndefined();
  });

  it('falls back to /slots for running when /metrics is disabled; waiting stays unknown', () => {
    expect(llamaCppSample(undefined, { total: 4, processing: 3 })).toMatchObject({ running: 3, waiting: null });
  });
});

describe('tgiSample', () => {
  it('reads batch size, queue size and the per-request token histograms', () => {
    expect(tgiSample(prom('tgi.prom'))).toEqual({
      engine: 'tgi',
      running: 14,
      waiting: 6,
      kvCacheUsage: null,
      promptTokensTotal: 1_864_213,
      generationTokensTotal: 603_377,
    });
  });
});

describe('ollamaSample', () => {
  it('lists loaded models and claims no request counts it cannot see', () => {
    expect(ollamaSample(json('ollama-ps.json'))).toEqual({
      engine: 'ollama',
      running: null,
      waiting: null,
      kvCacheUsage: null,
      promptTokensTotal: null,
      generationTokensTotal: null,
      loadedModels: [
        {
          name: 'gemma3:latest',
          sizeBytes: 6_591_830_464,
          vramBytes: 5_333_539_264,
          contextLength: 4096,
          expiresAt: '2025-10-17T16:47:07.93355-07:00',
        },
      ],
    });
  });

  it('an idle server has no loaded models; a non-/api/ps body is not Ollama', () => {
    expect(ollamaSample(json('ollama-ps-idle.json'))?.loadedModels).toEqual([]);
    expect(ollamaSample({ object: 'list', data: [] })).toBeUndefined();
    expect(ollamaSample(null)).toBeUndefined();
  });
});
