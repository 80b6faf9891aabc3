import OpenAI from 'openai';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_SIM_OPTIONS } from '../../sim/sim-options.js';
import type { SimOptions } from '../../sim/sim-options.js';
import { startSim } from '../../sim/sim-server.js';
import type { SimServer } from '../../sim/sim-server.js';

const open: SimServer[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function sim(overrides: Partial<SimOptions>): Promise<{ sim: SimServer; client: OpenAI }> {
  const s = await startSim({ ...DEFAULT_SIM_OPTIONS, port: 0, seed: 3, ...overrides });
  open.push(s);
  return { sim: s, client: new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0 }) };
}

const messages = [{ role: 'user' as const, content: 'count the trains' }];

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{model_name="sim-small",engine="0"} `));
  return Number(line?.split(' ')[1]);
}

/** Opens a raw chat request for a long answer; streaming ones resolve at the headers. */
async function openStream(url: string, signal: AbortSignal, stream = true): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'sim-small', messages, max_tokens: 1000, ignore_eos: true, stream }),
    signal,
  });
}

describe('continuous batching', () => {
  it('runs at most maxSeqs at once, queues the rest and completes them all', async () => {
    // A long prefill holds the first batch still while the rest queue up.
    const { sim: s, client } = await sim({ maxSeqs: 4, ttftMs: 600, tokensPerSecond: 5000 });
    const requests = Array.from({ length: 12 }, () =>
      client.chat.completions.create({ model: 'sim-small', messages, max_tokens: 8 }),
    );
    await vi.waitFor(() => expect(s.stats().received).toBe(12), { interval: 5 });
    expect(s.stats()).toMatchObject({ running: 4, waiting: 8 });
    expect(await metric(s.url, 'vllm:num_requests_running')).toBe(4);
    expect(await metric(s.url, 'vllm:num_requests_waiting')).toBe(8);
    expect(await metric(s.url, 'vllm:kv_cache_usage_perc')).toBeGreaterThan(0);
    const done = await Promise.all(requests);
    expect(done.every((r) => r.usage?.completion_tokens === 8 && r.choices[0]?.finish_reason === 'length')).toBe(true);
    expect(s.stats()).toMatchObject({ running: 0, waiting: 0, peakRunning: 4, completed: 12, aborted: 0 });
  });

  it('shares the token rate between running streams instead of serving them one by one', async () => {
    const tokensPerSecond = 200;
    const { sim: s, client } = await sim({ maxSeqs: 8, ttftMs: 0, tokensPerSecond });
    const streams = 4;
    const perStream = 16; // below the shortest natural answer, so every stream yields exactly this many
    const counts = new Array<number>(streams).fill(0);
    let othersWhenFirstFinished: number[] | undefined;
    const started = performance.now();
    await Promise.all(
      counts.map(async (_, i) => {
        const stream = await client.chat.completions.create({ model: 'sim-small', messages, max_tokens: perStream, stream: true });
        for await (const chunk of stream) {
          if (chunk.choices[0]?.delta.content) counts[i]!++;
        }
        othersWhenFirstFinished ??= [...counts];
      }),
    );
    const elapsedMs = performance.now() - started;
    expect(counts).toEqual([perStream, perStream, perStream, perStream]);
    // Fair sharing: when the first stream ends the others are well along too; sequential service
    // would leave them at 0..1 tokens. Not "nearly done": the four requests reach the sim up to
    // tens of ms apart on a loaded machine (a token is 20 ms here), and a late one is behind by
    // that much — a CI run saw 12 of 16.
    expect(Math.min(...(othersWhenFirstFinished ?? [0]))).toBeGreaterThanOrEqual(perStream / 2);
    // Capacity is shared, not multiplied: the decode tokens (all but each first) need this long.
    const decodeTokens = streams * (perStream - 1);
    expect(elapsedMs).toBeGreaterThanOrEqual((decodeTokens / tokensPerSecond) * 1000 * 0.8);
    expect(s.stats().generationTokens).toBe(streams * perStream);
  });

  it('counts a client abort of a stream and frees its slot for the next request', async () => {
    const { sim: s } = await sim({ maxSeqs: 1, ttftMs: 0, tokensPerSecond: 50 });
    const first = new AbortController();
    const res = await openStream(s.url, first.signal);
    const reader = res.body!.getReader();
    const { value } = await reader.read();
    expect(new TextDecoder().decode(value)).toContain('"role":"assistant"');
    // A second request waits behind the first, then is admitted when the first is aborted.
    const second = new AbortController();
    const queued = openStream(s.url, second.signal, false);
    await vi.waitFor(() => expect(s.stats().waiting).toBe(1), { interval: 5 });
    first.abort();
    await vi.waitFor(() => expect(s.stats()).toMatchObject({ aborted: 1, running: 1, waiting: 0 }), { interval: 5 });
    second.abort();
    await expect(queued).rejects.toThrow();
    await vi.waitFor(() => expect(s.stats()).toMatchObject({ aborted: 2, running: 0 }), { interval: 5 });
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toContain('vllm:request_success_total{model_name="sim-small",engine="0",finished_reason="abort"} 2.0');
    expect(s.stats().completed).toBe(0);
  });

  it('counts an abort of a stream still waiting in the queue', async () => {
    const { sim: s } = await sim({ maxSeqs: 1, ttftMs: 0, tokensPerSecond: 50 });
    const running = new AbortController();
    const waiting = new AbortController();
    await openStream(s.url, running.signal);
    await vi.waitFor(() => expect(s.stats().running).toBe(1), { interval: 5 });
    // Stream headers go out before admission, as vLLM's do; the body waits for a slot.
    const queued = await openStream(s.url, waiting.signal);
    expect(queued.status).toBe(200);
    await vi.waitFor(() => expect(s.stats().waiting).toBe(1), { interval: 5 });
    waiting.abort();
    await vi.waitFor(() => expect(s.stats()).toMatchObject({ aborted: 1, waiting: 0, running: 1 }), { interval: 5 });
    running.abort();
    await vi.waitFor(() => expect(s.stats()).toMatchObject({ aborted: 2, running: 0 }), { interval: 5 });
  });

  it('close() ends open streams, and is idempotent', async () => {
    const { sim: s } = await sim({ ttftMs: 0, tokensPerSecond: 50 });
    const res = await openStream(s.url, new AbortController().signal);
    const body = res.text();
    await vi.waitFor(() => expect(s.stats().running).toBe(1), { interval: 5 });
    await Promise.all([s.close(), s.close()]);
    await expect(body).rejects.toThrow();
    await expect(fetch(`${s.url}/health`)).rejects.toThrow();
  });
});
