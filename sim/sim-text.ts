/**
 * Deterministic "model output": words from a fixed vocabulary drawn with a PRNG seeded by the
 * simulator seed, the model and the prompt. One token is one word; every token after the first
 * carries its leading space, so concatenated deltas equal the plain content.
 */

export type FinishReason = 'stop' | 'length';

/** The tokens one sequence will produce, pulled one at a time by the engine. */
export interface TokenPlan {
  /** Tokens the sequence generates before it finishes. */
  readonly count: number;
  readonly finishReason: FinishReason;
  /** The next token's text; call exactly `count` times. */
  next(): string;
}

/** Default `max_tokens` when a request leaves it out (vLLM would use the rest of the context). */
export const DEFAULT_MAX_TOKENS = 64;
/** Simulated context window: prompt + max_tokens beyond it is a 400, as in vLLM. */
export const MAX_MODEL_LEN = 8192;
/** Natural output length (tokens before the simulated EOS) is drawn from this range. */
const MIN_NATURAL_TOKENS = 16;
const MAX_NATURAL_TOKENS = 96;

const VOCABULARY = [
  'the', 'a', 'switchyard', 'gateway', 'token', 'stream', 'model', 'node', 'batch', 'queue',
  'region', 'cluster', 'request', 'reply', 'fast', 'slow', 'quiet', 'bright', 'simple', 'steady',
  'river', 'signal', 'engine', 'rail', 'train', 'track', 'switch', 'yard', 'light', 'green',
  'red', 'amber', 'north', 'south', 'east', 'west', 'runs', 'waits', 'moves', 'turns',
  'holds', 'sends', 'reads', 'writes', 'and', 'or', 'then', 'with', 'under', 'over',
  'into', 'from', 'every', 'some', 'many', 'few', 'one', 'two', 'three', 'four',
  'kernel', 'cache', 'prefill', 'decode',
] as const;

/** FNV-1a over UTF-16 code units: fast, stable across platforms, good enough to seed a PRNG. */
export function hashString(text: string, basis = 0x811c9dc5): number {
  let h = basis >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Hash of the seed and the parts, with a separator no text contains. */
export function seedHash(seed: number, ...parts: readonly string[]): number {
  return hashString(`${seed}\u0000${parts.join('\u0000')}`);
}

/** mulberry32: a tiny 32-bit PRNG; uniform in [0, 1). */
export function createRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Prompt tokens as the simulator counts them: ceil(characters / 4). */
export function countPromptTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

export interface PlanInput {
  readonly seed: number;
  readonly model: string;
  /** Everything that should change the output when it changes (roles and contents). */
  readonly promptKey: string;
  /** Echo mode: reply with these words instead of random ones. */
  readonly echoWords: readonly string[] | null;
  readonly maxTokens: number;
  /** vLLM's `ignore_eos`: generate exactly `maxTokens`. */
  readonly ignoreEos: boolean;
  /** Tokens of the answer already given (a continued final message): the plan resumes after them. */
  readonly continuedTokens?: number;
}

function withSpace(word: string, index: number): string {
  return index === 0 ? word : ` ${word}`;
}

export function planOutput(input: PlanInput): TokenPlan {
  const { echoWords, maxTokens } = input;
  // A continued answer resumes where its prefix ended: the same words the whole answer would have had.
  const skip = input.continuedTokens ?? 0;
  if (echoWords !== null) {
    const left = Math.max(0, echoWords.length - skip);
    const count = Math.min(left, maxTokens);
    let i = skip;
    return {
      count,
      finishReason: left > maxTokens ? 'length' : 'stop',
      next: () => withSpace(echoWords[i] ?? '', i++),
    };
  }
  const rng = createRng(seedHash(input.seed, input.model, input.promptKey));
  const natural = Math.max(0, MIN_NATURAL_TOKENS + Math.floor(rng() * (MAX_NATURAL_TOKENS - MIN_NATURAL_TOKENS + 1)) - skip);
  const stops = !input.ignoreEos && natural <= maxTokens;
  for (let k = 0; k < skip; k++) rng();
  let i = skip;
  return {
    count: stops ? natural : maxTokens,
    finishReason: stops ? 'stop' : 'length',
    next: () => withSpace(VOCABULARY[Math.floor(rng() * VOCABULARY.length)] ?? 'the', i++),
  };
}

/** Splits echo text into word tokens. */
export function echoWordsOf(text: string): string[] {
  return text.split(/\s+/).filter((w) => w !== '');
}

/** A deterministic unit vector of `dim` components for the seed, model and input. */
export function embeddingOf(seed: number, model: string, input: string, dim: number): number[] {
  const rng = createRng(seedHash(seed, 'embedding', model, input));
  const v = Array.from({ length: dim }, () => rng() * 2 - 1);
  const norm = Math.sqrt(v.reduce((sum, x) => sum + x * x, 0));
  // A zero vector has no direction; the PRNG cannot realistically produce one, but stay a unit.
  return norm === 0 ? v.map((_, i) => (i === 0 ? 1 : 0)) : v.map((x) => x / norm);
}
