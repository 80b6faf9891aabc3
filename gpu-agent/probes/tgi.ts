import { sumMetric, type Sample } from './prom-text.js';
import type { EngineSample } from './types.js';

/**
 * Hugging Face TGI /metrics. `tgi_batch_current_size` is the batch being decoded and
 * `tgi_queue_size` the requests waiting for it. TGI has no running token counters: the closest
 * are the `_sum` of the per-request histograms `tgi_request_input_length` and
 * `tgi_request_generated_tokens`, which grow only when a request finishes, so rates derived from
 * them lag and come in steps. TGI exposes no KV-cache usage ratio.
 */
export function tgiSample(samples: readonly Sample[]): EngineSample {
  return {
    engine: 'tgi',
    running: sumMetric(samples, 'tgi_batch_current_size'),
    waiting: sumMetric(samples, 'tgi_queue_size'),
    kvCacheUsage: null,
    promptTokensTotal: sumMetric(samples, 'tgi_request_input_length_sum'),
    generationTokensTotal: sumMetric(samples, 'tgi_request_generated_tokens_sum'),
  };
}
