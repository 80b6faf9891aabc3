import type { FinishReason, TokenPlan } from './sim-text.js';

/**
 * Continuous batching as vLLM does it, in miniature: up to `maxSeqs` sequences run, the rest wait
 * FIFO. An admitted sequence spends `ttftMs` in prefill, which ends with its first token; then it
 * decodes, sharing `tokensPerSecond` equally with the other sequences in decode. One timer drives
 * every sequence, and it runs only while there is work.
 */

export interface SequenceSink {
  /** Called once per generated token; may abort the sequence (a simulated drop). */
  onToken(text: string): void;
  onFinish(reason: FinishReason): void;
}

export interface SequenceSpec {
  readonly model: string;
  readonly promptTokens: number;
  readonly plan: TokenPlan;
}

export interface SequenceHandle {
  /** Frees the slot at once; idempotent, and a no-op once the sequence finished. */
  abort(): void;
}

/** Starts a repeating timer and returns its stop function. Injected so unit tests drive time. */
export type TimerFactory = (tick: () => void, intervalMs: number) => () => void;

export interface EngineOptions {
  readonly models: readonly string[];
  readonly tokensPerSecond: number;
  /** Most tokens per second one sequence decodes; 0 or absent: no bound. */
  readonly seqTokensPerSecond?: number;
  readonly maxSeqs: number;
  readonly ttftMs: number;
  /** Scheduler period in milliseconds. */
  readonly tickMs?: number;
  readonly now?: () => number;
  readonly timer?: TimerFactory;
}

export interface ModelCounters {
  running: number;
  waiting: number;
  promptTokens: number;
  generationTokens: number;
  finished: { stop: number; length: number; abort: number };
}

export interface EngineSnapshot {
  running: number;
  waiting: number;
  peakRunning: number;
  /** Most requests inside the engine at once, running and waiting together. */
  peakInFlight: number;
  completed: number;
  aborted: number;
  promptTokens: number;
  generationTokens: number;
  /** Fraction 0..1 of the simulated KV budget held by running sequences. */
  kvCacheUsage: number;
  models: ReadonlyMap<string, Readonly<ModelCounters>>;
}

/** Simulated KV budget per slot, in tokens: the whole budget is `maxSeqs` times this. */
export const KV_TOKENS_PER_SEQ = 256;
/** A blocked event loop must not turn into one huge burst of tokens. */
const MAX_TICK_MS = 250;

type Phase = 'waiting' | 'prefill' | 'decode' | 'done';

interface Sequence {
  readonly spec: SequenceSpec;
  readonly sink: SequenceSink;
  readonly counters: ModelCounters;
  phase: Phase;
  prefillLeftMs: number;
  /** Fractional decode tokens carried between ticks. */
  credit: number;
  emitted: number;
}

const intervalTimer: TimerFactory = (tick, intervalMs) => {
  const t = setInterval(tick, intervalMs);
  // The HTTP server keeps the process alive; the scheduler alone must not.
  t.unref();
  return () => clearInterval(t);
};

export class BatchEngine {
  readonly #opts: Required<Omit<EngineOptions, 'models'>>;
  readonly #waiting = new Set<Sequence>();
  readonly #running = new Set<Sequence>();
  readonly #models = new Map<string, ModelCounters>();
  #stopTimer: (() => void) | undefined;
  #lastTick = 0;
  #peakRunning = 0;
  #peakInFlight = 0;
  #completed = 0;
  #aborted = 0;
  #closed = false;

  constructor(opts: EngineOptions) {
    this.#opts = {
      tokensPerSecond: opts.tokensPerSecond,
      seqTokensPerSecond: opts.seqTokensPerSecond ?? 0,
      maxSeqs: opts.maxSeqs,
      ttftMs: opts.ttftMs,
      tickMs: opts.tickMs ?? 5,
      now: opts.now ?? (() => performance.now()),
      timer: opts.timer ?? intervalTimer,
    };
    for (const m of opts.models) this.#counters(m);
  }

  submit(spec: SequenceSpec, sink: SequenceSink): SequenceHandle {
    if (this.#closed) throw new Error('engine closed');
    const seq: Sequence = {
      spec, sink, counters: this.#counters(spec.model), phase: 'waiting', prefillLeftMs: 0, credit: 0, emitted: 0,
    };
    this.#waiting.add(seq);
    seq.counters.waiting++;
    this.#peakInFlight = Math.max(this.#peakInFlight, this.#waiting.size + this.#running.size);
    this.#admit();
    this.#ensureTimer();
    return { abort: () => this.#abort(seq) };
  }

  /** Pooling requests (embeddings) finish at once but still count, as in vLLM. */
  recordPooling(model: string, promptTokens: number): void {
    const c = this.#counters(model);
    c.promptTokens += promptTokens;
    c.finished.stop++;
    this.#completed++;
  }

  snapshot(): EngineSnapshot {
    let promptTokens = 0;
    let generationTokens = 0;
    for (const c of this.#models.values()) {
      promptTokens += c.promptTokens;
      generationTokens += c.generationTokens;
    }
    let kvTokens = 0;
    for (const s of this.#running) kvTokens += s.spec.promptTokens + s.emitted;
    return {
      running: this.#running.size,
      waiting: this.#waiting.size,
      peakRunning: this.#peakRunning,
      peakInFlight: this.#peakInFlight,
      completed: this.#completed,
      aborted: this.#aborted,
      promptTokens,
      generationTokens,
      kvCacheUsage: Math.min(1, kvTokens / (this.#opts.maxSeqs * KV_TOKENS_PER_SEQ)),
      models: this.#models,
    };
  }

  /** Stops the timer and forgets every sequence without calling its sink. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#stopTimer?.();
    this.#stopTimer = undefined;
    for (const s of [...this.#waiting, ...this.#running]) this.#remove(s);
  }

  /** One scheduler step; public so a test with an injected timer can call it. */
  tick(): void {
    const now = this.#opts.now();
    const dt = Math.min(now - this.#lastTick, MAX_TICK_MS);
    this.#lastTick = now;
    let decoding = 0;
    for (const s of this.#running) if (s.phase === 'decode') decoding++;
    const fair = decoding === 0 ? 0 : (this.#opts.tokensPerSecond * dt) / 1000 / decoding;
    const cap = this.#opts.seqTokensPerSecond;
    const share = cap > 0 ? Math.min(fair, (cap * dt) / 1000) : fair;
    // A snapshot: sequences finish, abort and get admitted while we walk the batch.
    for (const s of [...this.#running]) {
      if (s.phase === 'prefill') {
        s.prefillLeftMs -= dt;
        if (s.prefillLeftMs > 0) continue;
        s.phase = 'decode';
        s.counters.promptTokens += s.spec.promptTokens;
        // Prefill produces the first token.
        this.#emit(s);
      } else if (s.phase === 'decode') {
        s.credit += share;
        // The epsilon keeps float sums (0.1 + 0.2 + ...) from losing a token now and then.
        while (s.credit >= 1 - 1e-9 && s.phase === 'decode') {
          s.credit -= 1;
          this.#emit(s);
        }
      }
    }
    if (this.#running.size === 0 && this.#waiting.size === 0) {
      this.#stopTimer?.();
      this.#stopTimer = undefined;
    }
  }

  #emit(s: Sequence): void {
    if (s.emitted < s.spec.plan.count) {
      s.emitted++;
      s.counters.generationTokens++;
      s.sink.onToken(s.spec.plan.next());
      if (s.phase === 'done') return;
    }
    if (s.emitted >= s.spec.plan.count) this.#finish(s, s.spec.plan.finishReason);
  }

  #finish(s: Sequence, reason: FinishReason): void {
    this.#remove(s);
    s.counters.finished[reason]++;
    this.#completed++;
    this.#admit();
    s.sink.onFinish(reason);
  }

  #abort(s: Sequence): void {
    if (s.phase === 'done') return;
    this.#remove(s);
    s.counters.finished.abort++;
    this.#aborted++;
    this.#admit();
  }

  #remove(s: Sequence): void {
    if (s.phase === 'waiting') {
      this.#waiting.delete(s);
      s.counters.waiting--;
    } else if (s.phase !== 'done') {
      this.#running.delete(s);
      s.counters.running--;
    }
    s.phase = 'done';
  }

  #admit(): void {
    if (this.#closed) return;
    for (const s of this.#waiting) {
      if (this.#running.size >= this.#opts.maxSeqs) break;
      this.#waiting.delete(s);
      s.counters.waiting--;
      s.phase = 'prefill';
      s.prefillLeftMs = this.#opts.ttftMs;
      this.#running.add(s);
      s.counters.running++;
    }
    this.#peakRunning = Math.max(this.#peakRunning, this.#running.size);
  }

  #ensureTimer(): void {
    if (this.#stopTimer !== undefined || this.#closed) return;
    this.#lastTick = this.#opts.now();
    this.#stopTimer = this.#opts.timer(() => this.tick(), this.#opts.tickMs);
  }

  #counters(model: string): ModelCounters {
    let c = this.#models.get(model);
    if (c === undefined) {
      c = { running: 0, waiting: 0, promptTokens: 0, generationTokens: 0, finished: { stop: 0, length: 0, abort: 0 } };
      this.#models.set(model, c);
    }
    return c;
  }
}
