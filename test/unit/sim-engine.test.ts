import { describe, expect, it } from 'vitest';
import { BatchEngine, KV_TOKENS_PER_SEQ } from '../../sim/batch-engine.js';
import type { EngineOptions, SequenceHandle } from '../../sim/batch-engine.js';
import type { FinishReason, TokenPlan } from '../../sim/sim-text.js';

/** An engine on a hand-driven clock: `advance(ms)` moves time and runs one scheduler tick. */
function manualEngine(opts: Omit<EngineOptions, 'models' | 'now' | 'timer'>) {
  let now = 0;
  let timers = 0;
  let running = false;
  const engine = new BatchEngine({
    ...opts,
    models: ['m'],
    now: () => now,
    timer: () => {
      timers++;
      running = true;
      return () => {
        running = false;
      };
    },
  });
  return {
    engine,
    advance(ms: number) {
      now += ms;
      engine.tick();
    },
    timerStarts: () => timers,
    timerRunning: () => running,
  };
}

function plan(count: number, finishReason: FinishReason = 'stop'): TokenPlan {
  let i = 0;
  return { count, finishReason, next: () => `t${i++}` };
}

interface Recorded {
  tokens: string[];
  finished: FinishReason | null;
  handle: SequenceHandle;
}

function submit(engine: BatchEngine, count: number, promptTokens = 10): Recorded {
  const rec = { tokens: [] as string[], finished: null as FinishReason | null } as Recorded;
  rec.handle = engine.submit(
    { model: 'm', promptTokens, plan: plan(count) },
    { onToken: (t) => rec.tokens.push(t), onFinish: (r) => (rec.finished = r) },
  );
  return rec;
}

describe('BatchEngine', () => {
  it('spends ttft in prefill, which ends with the first token', () => {
    const { engine, advance } = manualEngine({ tokensPerSecond: 100, maxSeqs: 4, ttftMs: 50 });
    const a = submit(engine, 5);
    advance(40);
    expect(a.tokens).toEqual([]);
    advance(10);
    expect(a.tokens).toEqual(['t0']);
    expect(engine.snapshot().promptTokens).toBe(10);
  });

  it('shares decode throughput equally between running sequences', () => {
    const { engine, advance } = manualEngine({ tokensPerSecond: 100, maxSeqs: 4, ttftMs: 0 });
    const a = submit(engine, 1000);
    const b = submit(engine, 1000);
    advance(0); // prefill ends: one token each
    advance(100); // 10 tokens of capacity, 5 each
    expect(a.tokens).toHaveLength(6);
    expect(b.tokens).toHaveLength(6);
    a.handle.abort();
    advance(100); // b alone now gets all 10
    expect(b.tokens).toHaveLength(16);
  });

  it('bounds one sequence\'s decode speed with seqTokensPerSecond, however few run', () => {
    const { engine, advance } = manualEngine({ tokensPerSecond: 1000, seqTokensPerSecond: 20, maxSeqs: 4, ttftMs: 0 });
    const a = submit(engine, 1000);
    advance(0);
    advance(100); // 100 tokens of capacity, but one sequence decodes at most 2 in 100 ms
    expect(a.tokens).toHaveLength(1 + 2);
    const b = submit(engine, 1000);
    advance(0);
    advance(100);
    expect(a.tokens).toHaveLength(1 + 2 + 2);
    expect(b.tokens).toHaveLength(1 + 2);
  });

  it('accumulates fractional tokens across ticks', () => {
    const { engine, advance } = manualEngine({ tokensPerSecond: 30, maxSeqs: 4, ttftMs: 0 });
    const a = submit(engine, 1000);
    advance(0);
    for (let i = 0; i < 10; i++) advance(10); // 0.3 tokens per tick
    expect(a.tokens).toHaveLength(1 + 3);
  });

  it('never runs more than maxSeqs and admits the waiting FIFO as slots free', () => {
    const { engine, advance } = manualEngine({ tokensPerSecond: 1000, maxSeqs: 2, ttftMs: 0 });
    const seqs = [submit(engine, 3), submit(engine, 3), submit(engine, 3), submit(engine, 3)];
    expect(engine.snapshot()).toMatchObject({ running: 2, waiting: 2 });
    advance(0);
    expect(seqs.map((s) => s.tokens.length)).toEqual([1, 1, 0, 0]);
    advance(10); // 10 tokens of capacity: the first two finish, the next two are admitted
    expect(seqs.map((s) => s.finished)).toEqual(['stop', 'stop', null, null]);
    expect(engine.snapshot()).toMatchObject({ running: 2, waiting: 0 });
    advance(0);
    advance(10);
    expect(seqs.every((s) => s.finished === 'stop')).toBe(true);
    expect(engine.snapshot()).toMatchObject({ running: 0, waiting: 0, peakRunning: 2, completed: 4, aborted: 0 });
  });

  it('frees the slot of an aborted sequence at once and counts it', () => {
    const { engine } = manualEngine({ tokensPerSecond: 1000, maxSeqs: 1, ttftMs: 0 });
    const a = submit(engine, 10);
    const b = submit(engine, 10);
    const c = submit(engine, 10);
    c.handle.abort(); // from the waiting queue
    a.handle.abort(); // from the batch; b takes its slot
    a.handle.abort(); // idempotent
    const snap = engine.snapshot();
    expect(snap).toMatchObject({ running: 1, waiting: 0, aborted: 2 });
    expect(snap.models.get('m')?.finished).toEqual({ stop: 0, length: 0, abort: 2 });
    expect(b.finished).toBeNull();
  });

  it('lets a sink abort its own sequence from onToken (a scripted drop)', () => {
    const { engine, advance } = manualEngine({ tokensPerSecond: 1000, maxSeqs: 1, ttftMs: 0 });
    const tokens: string[] = [];
    let finished = false;
    const handle: SequenceHandle = engine.submit(
      { model: 'm', promptTokens: 1, plan: plan(2) },
      {
        onToken: (t) => {
          tokens.push(t);
          if (tokens.length === 2) handle.abort();
        },
        onFinish: () => (finished = true),
      },
    );
    advance(0);
    advance(10);
    expect(tokens).toEqual(['t0', 't1']);
    expect(finished).toBe(false);
    expect(engine.snapshot()).toMatchObject({ running: 0, aborted: 1, completed: 0 });
  });

  it('finishes an empty plan at the end of prefill without a token', () => {
    const { engine, advance } = manualEngine({ tokensPerSecond: 1000, maxSeqs: 1, ttftMs: 0 });
    const a = submit(engine, 0);
    advance(0);
    expect(a).toMatchObject({ tokens: [], finished: 'stop' });
  });

  it('reports KV usage from the running sequences and runs its timer only while busy', () => {
    const t = manualEngine({ tokensPerSecond: 1000, maxSeqs: 2, ttftMs: 0 });
    expect(t.timerRunning()).toBe(false);
    const a = submit(t.engine, 100, KV_TOKENS_PER_SEQ);
    expect(t.timerRunning()).toBe(true);
    expect(t.engine.snapshot().kvCacheUsage).toBeCloseTo(0.5);
    a.handle.abort();
    t.advance(5);
    expect(t.engine.snapshot().kvCacheUsage).toBe(0);
    expect(t.timerRunning()).toBe(false);
    submit(t.engine, 1);
    expect(t.timerStarts()).toBe(2);
  });

  it('close() forgets every sequence without calling sinks and refuses new work', () => {
    const t = manualEngine({ tokensPerSecond: 1000, maxSeqs: 1, ttftMs: 0 });
    const a = submit(t.engine, 5);
    submit(t.engine, 5);
    t.engine.close();
    t.engine.close();
    expect(t.timerRunning()).toBe(false);
    expect(t.engine.snapshot()).toMatchObject({ running: 0, waiting: 0 });
    expect(a.finished).toBeNull();
    expect(() => submit(t.engine, 1)).toThrow(/closed/);
  });
});
