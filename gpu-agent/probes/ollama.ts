import type { EngineSample } from './types.js';

export interface OllamaLoadedModel {
  readonly name: string;
  readonly sizeBytes: number | null;
  readonly vramBytes: number | null;
  readonly contextLength: number | null;
  /** ISO 8601; when Ollama will unload the model if it stays idle. */
  readonly expiresAt: string | null;
}

/**
 * Ollama has no metrics endpoint and no request counts: `GET /api/ps` lists the models loaded in
 * memory and nothing about requests in flight or queued. So running, waiting, KV usage and token
 * counters are all null (unknown), and the loaded models ride alongside for placement decisions.
 */
export interface OllamaSample extends EngineSample {
  readonly engine: 'ollama';
  readonly loadedModels: readonly OllamaLoadedModel[];
}

const numOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const strOrNull = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** Parses a /api/ps body; undefined when it is not one (no `models` array). */
export function ollamaSample(body: unknown): OllamaSample | undefined {
  if (typeof body !== 'object' || body === null || !('models' in body) || !Array.isArray(body.models)) {
    return undefined;
  }
  const loadedModels: OllamaLoadedModel[] = [];
  for (const m of body.models as unknown[]) {
    if (typeof m !== 'object' || m === null) continue;
    const r = m as Record<string, unknown>;
    const name = strOrNull(r['name']) ?? strOrNull(r['model']);
    if (name === null) continue;
    loadedModels.push({
      name,
      sizeBytes: numOrNull(r['size']),
      vramBytes: numOrNull(r['size_vram']),
      contextLength: numOrNull(r['context_length']),
      expiresAt: strOrNull(r['expires_at']),
    });
  }
  return {
    engine: 'ollama',
    running: null,
    waiting: null,
    kvCacheUsage: null,
    promptTokensTotal: null,
    generationTokensTotal: null,
    loadedModels,
  };
}
