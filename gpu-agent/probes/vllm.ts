import { meanMetric, sumMetric, type Sample } from './prom-text.js';
import type { EngineSample } from './types.js';

/**
 * vLLM /metrics (V0 and V1). Counts and token counters are summed over every `model_name` and
 * `engine` (data-parallel rank); KV-cache usage is a ratio, so it is the mean over engines, which
 * is the pool-wide fraction when the engines have equal caches (they do: one config per server).
 * `vllm:kv_cache_usage_perc` replaced `vllm:gpu_cache_usage_perc` in v0.10; both are 0..1 despite
 * the name.
 */
export function vllmSample(samples: readonly Sample[]): EngineSample {
  return {
    engine: 'vllm',
    running: sumMetric(samples, 'vllm:num_requests_running'),
    waiting: sumMetric(samples, 'vllm:num_requests_waiting'),
    kvCacheUsage:
      meanMetric(samples, 'vllm:kv_cache_usage_perc') ?? meanMetric(samples, 'vllm:gpu_cache_usage_perc'),
    promptTokensTotal: sumMetric(samples, 'vllm:prompt_tokens_total'),
    generationTokensTotal: sumMetric(samples, 'vllm:generation_tokens_total'),
  };
}
