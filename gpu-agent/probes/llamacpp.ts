import { meanMetric, sumMetric, type Sample } from './prom-text.js';
import type { EngineSample } from './types.js';

export interface LlamaCppSlots {
  readonly total: number;
  readonly processing: number;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * llama-server /slots. Current builds mark a busy slot with `is_processing: true`; builds before
 * late 2024 used `state` (0 idle, 1 processing). Undefined when the body is not a slot list.
 */
export function parseLlamaCppSlots(body: unknown): LlamaCppSlots | undefined {
  if (!Array.isArray(body) || !body.every(isRecord)) return undefined;
  const processing = body.filter((s) =>
    typeof s['is_processing'] === 'boolean' ? s['is_processing'] : s['state'] === 1,
  ).length;
  return { total: body.length, processing };
}

/**
 * llama-server /metrics (only with `--metrics`) and /slots (unless `--no-slots`); either may be
 * missing. `llamacpp:prompt_tokens_total` counts processed prompt tokens, cache hits excluded.
 * `llamacpp:kv_cache_usage_ratio` was removed from newer builds; without it usage is unknown.
 */
export function llamaCppSample(samples: readonly Sample[] | undefined, slots?: LlamaCppSlots): EngineSample {
  const s = samples ?? [];
  return {
    engine: 'llamacpp',
    running: sumMetric(s, 'llamacpp:requests_processing') ?? slots?.processing ?? null,
    waiting: sumMetric(s, 'llamacpp:requests_deferred'),
    kvCacheUsage: meanMetric(s, 'llamacpp:kv_cache_usage_ratio'),
    promptTokensTotal: sumMetric(s, 'llamacpp:prompt_tokens_total'),
    generationTokensTotal: sumMetric(s, 'llamacpp:tokens_predicted_total'),
  };
}
