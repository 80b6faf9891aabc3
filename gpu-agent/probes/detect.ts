import { request } from 'undici';
import { llamaCppSample, parseLlamaCppSlots } from './llamacpp.js';
import { ollamaSample } from './ollama.js';
import { hasMetricPrefix, parsePromText, type Sample } from './prom-text.js';
import { sglangSample } from './sglang.js';
import { tgiSample } from './tgi.js';
import type { EngineKind, EngineSample } from './types.js';
import { vllmSample } from './vllm.js';

export interface FetchTextResult {
  readonly status: number;
  readonly body: string;
}

/** GETs a URL; rejects only when no response arrived (refused, reset, timed out). */
export type FetchText = (url: string) => Promise<FetchTextResult>;

export function defaultFetchText(timeoutMs = 2_000): FetchText {
  // undici directly (as everywhere we talk to an engine), with the timeout on headers and body.
  return async (url) => {
    const res = await request(url, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    return { status: res.statusCode, body: await res.body.text() };
  };
}

export interface DetectedEngine {
  readonly engine: EngineKind;
  /** The reading taken while detecting, so the first report need not fetch again. */
  readonly sample: EngineSample;
}

/** Metric-name prefixes, checked in order; each engine's own prefix is unique to it. */
const PROM_ENGINES: readonly (readonly [string, EngineKind, (s: readonly Sample[]) => EngineSample])[] = [
  ['vllm:', 'vllm', vllmSample],
  ['sglang:', 'sglang', sglangSample],
  ['llamacpp:', 'llamacpp', (s) => llamaCppSample(s)],
  ['tgi_', 'tgi', tgiSample],
];

async function get(fetchText: FetchText, url: string): Promise<string | undefined> {
  try {
    const res = await fetchText(url);
    return res.status === 200 ? res.body : undefined;
  } catch {
    // Nothing listening on this path or port is an answer here, not a failure.
    return undefined;
  }
}

function json(body: string | undefined): unknown {
  if (body === undefined) return undefined;
  try {
    return JSON.parse(body) as unknown;
  } catch {
    return undefined;
  }
}

function fromMetrics(body: string | undefined): DetectedEngine | undefined {
  if (body === undefined) return undefined;
  const samples = parsePromText(body);
  for (const [prefix, engine, toSample] of PROM_ENGINES) {
    if (hasMetricPrefix(samples, prefix)) return { engine, sample: toSample(samples) };
  }
  return undefined;
}

/**
 * Which engine serves `baseUrl`: its /metrics names (vLLM, SGLang, llama.cpp, TGI), then Ollama's
 * /api/ps, then llama.cpp's /slots for a llama-server started without `--metrics`.
 * Undefined when none answers like an engine.
 */
export async function detectEngine(
  baseUrl: string,
  fetchText: FetchText = defaultFetchText(),
): Promise<DetectedEngine | undefined> {
  const base = baseUrl.replace(/\/+$/, '');
  const prom = fromMetrics(await get(fetchText, `${base}/metrics`));
  if (prom) return prom;
  const ollama = ollamaSample(json(await get(fetchText, `${base}/api/ps`)));
  if (ollama) return { engine: 'ollama', sample: ollama };
  const slots = parseLlamaCppSlots(json(await get(fetchText, `${base}/slots`)));
  if (slots) return { engine: 'llamacpp', sample: llamaCppSample(undefined, slots) };
  return undefined;
}
