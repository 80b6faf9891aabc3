import { meanMetric, sumMetric, type LabelFilter, type Sample } from './prom-text.js';
import type { EngineSample } from './types.js';

/**
 * Tensor- and pipeline-parallel ranks of one scheduler report the same batch, so summing them
 * would count each request tp*pp times. Keep rank 0 of each (or series without the label) and sum
 * over what remains: models and data-parallel ranks.
 */
const firstRank: LabelFilter = (labels) =>
  (labels['tp_rank'] ?? '0') === '0' && (labels['pp_rank'] ?? '0') === '0';

/** SGLang /metrics. `sglang:token_usage` is the KV pool's used fraction, 0..1. */
export function sglangSample(samples: readonly Sample[]): EngineSample {
  return {
    engine: 'sglang',
    running: sumMetric(samples, 'sglang:num_running_reqs', firstRank),
    waiting: sumMetric(samples, 'sglang:num_queue_reqs', firstRank),
    kvCacheUsage: meanMetric(samples, 'sglang:token_usage', firstRank),
    promptTokensTotal: sumMetric(samples, 'sglang:prompt_tokens_total', firstRank),
    generationTokensTotal: sumMetric(samples, 'sglang:generation_tokens_total', firstRank),
  };
}
