import { parseArgs } from 'node:util';

/** Scripted failures. Every rate is a fraction 0..1, drawn per inference request from the seeded PRNG. */
export interface SimFailures {
  /** Fraction of requests answered 500 with vLLM's error body. */
  errorRate: number;
  /** Fraction answered 429 with `retry-after: 1`. */
  rate429: number;
  /** Fraction answered 503. */
  rate503: number;
  /** Stall in milliseconds before the first byte (before the response headers) ... */
  stallMs: number;
  /** ... for this fraction of requests. Defaults to 1, so `--stall-ms` alone stalls every request. */
  stallRate: number;
  /**
   * Fraction of requests whose TCP connection is destroyed after a few tokens: mid-stream for SSE,
   * before any response byte for plain requests.
   */
  dropRate: number;
  /** For this many milliseconds after start, /health and inference answer 503 (model loading). */
  slowStartMs: number;
}

/** The GPUs the simulator pretends to run on, served as a DCGM exporter page at /dcgm/metrics. */
export interface SimGpus {
  /** Number of GPUs; the batch is spread over all of them (tensor parallel), so they read alike. */
  count: number;
  /** Framebuffer per GPU in GiB. */
  memoryGiB: number;
  /** DCGM's `modelName` label. */
  name: string;
}

export interface SimOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  models: readonly string[];
  /** Decode capacity in tokens per second, shared by the sequences in decode. */
  tokensPerSecond: number;
  /**
   * Most tokens per second one sequence decodes (an engine's step time bounds it, however few
   * sequences run); 0: no bound, a lone sequence gets the whole `tokensPerSecond`.
   */
  seqTokensPerSecond: number;
  /** Sequences running at once; more wait FIFO (vLLM's "waiting"). */
  maxSeqs: number;
  /** Prefill time in milliseconds, from admission to the first token. */
  ttftMs: number;
  seed: number;
  failures: SimFailures;
  /** Length of the vectors /v1/embeddings returns. */
  embeddingDim: number;
  gpus: SimGpus;
}

export const DEFAULT_SIM_OPTIONS: SimOptions = Object.freeze({
  host: '127.0.0.1',
  port: 8000,
  models: Object.freeze(['sim-small']),
  tokensPerSecond: 1000,
  seqTokensPerSecond: 0,
  maxSeqs: 32,
  ttftMs: 30,
  seed: 0,
  failures: Object.freeze({
    errorRate: 0,
    rate429: 0,
    rate503: 0,
    stallMs: 0,
    stallRate: 1,
    dropRate: 0,
    slowStartMs: 0,
  }),
  embeddingDim: 16,
  gpus: Object.freeze({ count: 1, memoryGiB: 80, name: 'NVIDIA H100 80GB HBM3' }),
});

const MAX_GPUS = 64;
const MAX_GPU_MEMORY_GIB = 1024;

/** Also listed by `switchyard sim --help`. */
export const FLAGS = {
  port: { type: 'string' },
  host: { type: 'string' },
  models: { type: 'string' },
  'tokens-per-second': { type: 'string' },
  'seq-tokens-per-second': { type: 'string' },
  'max-seqs': { type: 'string' },
  'ttft-ms': { type: 'string' },
  seed: { type: 'string' },
  'error-rate': { type: 'string' },
  'rate-429': { type: 'string' },
  'rate-503': { type: 'string' },
  'stall-ms': { type: 'string' },
  'stall-rate': { type: 'string' },
  'drop-rate': { type: 'string' },
  'slow-start-ms': { type: 'string' },
  'embedding-dim': { type: 'string' },
  gpus: { type: 'string' },
  'gpu-memory-gib': { type: 'string' },
  'gpu-name': { type: 'string' },
} as const;

type Flag = keyof typeof FLAGS;
type Kind = 'int' | 'positive-int' | 'non-negative' | 'positive' | 'rate';

const KIND_TEXT: Record<Kind, string> = {
  int: 'an integer',
  'positive-int': 'an integer >= 1',
  'non-negative': 'a number >= 0',
  positive: 'a number > 0',
  rate: 'a number between 0 and 1',
};

function isValid(kind: Kind, n: number): boolean {
  if (!Number.isFinite(n)) return false;
  switch (kind) {
    case 'int':
      return Number.isSafeInteger(n);
    case 'positive-int':
      return Number.isSafeInteger(n) && n >= 1;
    case 'non-negative':
      return n >= 0;
    case 'positive':
      return n > 0;
    case 'rate':
      return n >= 0 && n <= 1;
  }
}

function parseNumber(flag: Flag, raw: string | undefined, kind: Kind, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = raw.trim() === '' ? Number.NaN : Number(raw);
  if (!isValid(kind, n)) throw new Error(`--${flag} must be ${KIND_TEXT[kind]}, got "${raw}"`);
  return n;
}

function parseModels(raw: string | undefined): readonly string[] {
  if (raw === undefined) return DEFAULT_SIM_OPTIONS.models;
  const models = raw.split(',').map((m) => m.trim());
  if (models.some((m) => m === '')) throw new Error(`--models must be a comma-separated list of names, got "${raw}"`);
  if (new Set(models).size !== models.length) throw new Error(`--models lists a model twice: "${raw}"`);
  return Object.freeze(models);
}

/** Parses `switchyard sim` flags into frozen options; throws an Error naming the flag on a bad value. */
export function parseSimArgs(argv: readonly string[]): SimOptions {
  const { values: v } = parseArgs({ args: [...argv], options: FLAGS, strict: true, allowPositionals: false });
  const d = DEFAULT_SIM_OPTIONS;
  const f = d.failures;
  const port = parseNumber('port', v.port, 'int', d.port);
  if (port < 0 || port > 65535) throw new Error(`--port must be an integer from 0 to 65535, got "${v.port}"`);
  const host = v.host ?? d.host;
  if (host.trim() === '') throw new Error('--host must not be empty');
  const options: SimOptions = {
    host,
    port,
    models: parseModels(v.models),
    tokensPerSecond: parseNumber('tokens-per-second', v['tokens-per-second'], 'positive', d.tokensPerSecond),
    seqTokensPerSecond: parseNumber('seq-tokens-per-second', v['seq-tokens-per-second'], 'non-negative', d.seqTokensPerSecond),
    maxSeqs: parseNumber('max-seqs', v['max-seqs'], 'positive-int', d.maxSeqs),
    ttftMs: parseNumber('ttft-ms', v['ttft-ms'], 'non-negative', d.ttftMs),
    seed: parseNumber('seed', v.seed, 'int', d.seed),
    failures: {
      errorRate: parseNumber('error-rate', v['error-rate'], 'rate', f.errorRate),
      rate429: parseNumber('rate-429', v['rate-429'], 'rate', f.rate429),
      rate503: parseNumber('rate-503', v['rate-503'], 'rate', f.rate503),
      stallMs: parseNumber('stall-ms', v['stall-ms'], 'non-negative', f.stallMs),
      stallRate: parseNumber('stall-rate', v['stall-rate'], 'rate', f.stallRate),
      dropRate: parseNumber('drop-rate', v['drop-rate'], 'rate', f.dropRate),
      slowStartMs: parseNumber('slow-start-ms', v['slow-start-ms'], 'non-negative', f.slowStartMs),
    },
    embeddingDim: parseNumber('embedding-dim', v['embedding-dim'], 'positive-int', d.embeddingDim),
    gpus: {
      count: parseNumber('gpus', v.gpus, 'positive-int', d.gpus.count),
      memoryGiB: parseNumber('gpu-memory-gib', v['gpu-memory-gib'], 'positive', d.gpus.memoryGiB),
      name: v['gpu-name'] ?? d.gpus.name,
    },
  };
  validateSimOptions(options);
  Object.freeze(options.failures);
  Object.freeze(options.gpus);
  return Object.freeze(options);
}

/**
 * Checks options built in code (tests, bench) as strictly as the flags. Messages name the flag,
 * so a CLI user and a test author read the same thing.
 */
export function validateSimOptions(o: SimOptions): void {
  const checks: ReadonlyArray<readonly [Flag, number, Kind]> = [
    ['port', o.port, 'int'],
    ['tokens-per-second', o.tokensPerSecond, 'positive'],
    ['seq-tokens-per-second', o.seqTokensPerSecond, 'non-negative'],
    ['max-seqs', o.maxSeqs, 'positive-int'],
    ['ttft-ms', o.ttftMs, 'non-negative'],
    ['seed', o.seed, 'int'],
    ['error-rate', o.failures.errorRate, 'rate'],
    ['rate-429', o.failures.rate429, 'rate'],
    ['rate-503', o.failures.rate503, 'rate'],
    ['stall-ms', o.failures.stallMs, 'non-negative'],
    ['stall-rate', o.failures.stallRate, 'rate'],
    ['drop-rate', o.failures.dropRate, 'rate'],
    ['slow-start-ms', o.failures.slowStartMs, 'non-negative'],
    ['embedding-dim', o.embeddingDim, 'positive-int'],
    ['gpus', o.gpus.count, 'positive-int'],
    ['gpu-memory-gib', o.gpus.memoryGiB, 'positive'],
  ];
  for (const [flag, n, kind] of checks) {
    if (!isValid(kind, n)) throw new Error(`--${flag} must be ${KIND_TEXT[kind]}, got ${String(n)}`);
  }
  if (o.port < 0 || o.port > 65535) throw new Error(`--port must be an integer from 0 to 65535, got ${o.port}`);
  if (o.models.length === 0) throw new Error('--models must name at least one model');
  // DCGM reports at most a few dozen GPUs per host; the cap keeps a typo from writing a huge page.
  if (o.gpus.count > MAX_GPUS) throw new Error(`--gpus must be at most ${MAX_GPUS}, got ${o.gpus.count}`);
  if (o.gpus.memoryGiB > MAX_GPU_MEMORY_GIB) throw new Error(`--gpu-memory-gib must be at most ${MAX_GPU_MEMORY_GIB}, got ${o.gpus.memoryGiB}`);
  if (o.gpus.name.trim() === '') throw new Error('--gpu-name must not be empty');
  const { errorRate, rate429, rate503 } = o.failures;
  // One uniform draw picks the failure, so the three status rates partition [0, 1).
  if (errorRate + rate429 + rate503 > 1 + 1e-9) {
    throw new Error(`--error-rate + --rate-429 + --rate-503 must not exceed 1, got ${errorRate + rate429 + rate503}`);
  }
}
