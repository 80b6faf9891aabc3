import { request } from 'node:http';
import OpenAI, { APIConnectionError, InternalServerError, RateLimitError } from 'openai';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_SIM_OPTIONS } from '../../sim/sim-options.js';
import type { SimFailures, SimOptions } from '../../sim/sim-options.js';
import { startSim } from '../../sim/sim-server.js';
import type { SimServer } from '../../sim/sim-server.js';

const open: SimServer[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function sim(failures: Partial<SimFailures>, more: Partial<SimOptions> = {}) {
  const s = await startSim({
    ...DEFAULT_SIM_OPTIONS,
    port: 0,
    ttftMs: 0,
    tokensPerSecond: 5000,
    seed: 11,
    failures: { ...DEFAULT_SIM_OPTIONS.failures, ...failures },
    ...more,
  });
  open.push(s);
  return { sim: s, client: new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0 }) };
}

const messages = [{ role: 'user' as const, content: 'hello' }];

function chat(url: string, body: object = {}): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'sim-small', messages, max_tokens: 2, ...body }),
  });
}

/** Resolves with the ms until the response headers of a chat request arrived. */
function timeToHeaders(url: string): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      resolve(performance.now() - started);
      res.resume();
    });
    req.on('error', reject);
    req.end(JSON.stringify({ model: 'sim-small', messages, max_tokens: 1 }));
  });
}

describe('scripted failures', () => {
  it('--error-rate 1 answers 500 with vLLM InternalServerError', async () => {
    const { sim: s, client } = await sim({ errorRate: 1 });
    await expect(client.chat.completions.create({ model: 'sim-small', messages })).rejects.toBeInstanceOf(InternalServerError);
    const res = await chat(s.url);
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ error: { type: 'InternalServerError', param: null, code: 500 } });
    expect(s.stats()).toMatchObject({ received: 2, completed: 0 });
  });

  it('--rate-429 1 answers 429 with retry-after: 1', async () => {
    const { sim: s, client } = await sim({ rate429: 1 });
    const err: unknown = await client.chat.completions.create({ model: 'sim-small', messages }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitError);
    expect((err as RateLimitError).headers.get('retry-after')).toBe('1');
    const res = await chat(s.url);
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toMatchObject({ error: { type: 'RateLimitError', code: 429 } });
  });

  it('--rate-503 1 answers 503 on every inference endpoint', async () => {
    const { sim: s, client } = await sim({ rate503: 1 });
    const err: unknown = await client.embeddings.create({ model: 'sim-small', input: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InternalServerError);
    expect((err as InternalServerError).status).toBe(503);
    const res = await fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'sim-small', prompt: 'x' }),
    });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: { type: 'ServiceUnavailableError', code: 503 } });
  });

  it('draws failures from the seed: the same seed gives the same pattern', async () => {
    const pattern = async (seed: number): Promise<number[]> => {
      const { sim: s } = await sim({ errorRate: 0.5 }, { seed });
      const statuses: number[] = [];
      for (let i = 0; i < 24; i++) {
        const res = await chat(s.url, { max_tokens: 1 });
        await res.arrayBuffer();
        statuses.push(res.status);
      }
      return statuses;
    };
    const a = await pattern(5);
    expect(await pattern(5)).toEqual(a);
    expect(new Set(a)).toEqual(new Set([200, 500]));
    expect(await pattern(6)).not.toEqual(a);
  });

  it('--stall-ms holds the response headers back (stall-rate defaults to 1)', async () => {
    const { sim: s } = await sim({ stallMs: 300 });
    expect(await timeToHeaders(s.url)).toBeGreaterThanOrEqual(290);
  });

  it('--stall-rate 0 never stalls', async () => {
    const { sim: s } = await sim({ stallMs: 60_000, stallRate: 0 });
    expect(await timeToHeaders(s.url)).toBeLessThan(10_000);
  });

  it('a client that leaves during a stall counts as aborted and never reaches the engine', async () => {
    const { sim: s } = await sim({ stallMs: 60_000 });
    const controller = new AbortController();
    const pending = fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'sim-small', messages }),
      signal: controller.signal,
    });
    await vi.waitFor(() => expect(s.stats().received).toBe(1), { interval: 5 });
    controller.abort();
    await expect(pending).rejects.toThrow();
    await vi.waitFor(() => expect(s.stats().aborted).toBe(1), { interval: 5 });
    expect(s.stats()).toMatchObject({ running: 0, waiting: 0, completed: 0, generationTokens: 0 });
  });

  it('--drop-rate 1 destroys a stream after a few tokens', async () => {
    const { sim: s, client } = await sim({ dropRate: 1 });
    const stream = await client.chat.completions.create({ model: 'sim-small', messages, max_tokens: 50, stream: true });
    const words: string[] = [];
    const consume = async (): Promise<void> => {
      for await (const chunk of stream) {
        const d = chunk.choices[0]?.delta.content;
        if (d) words.push(d);
      }
    };
    await expect(consume()).rejects.toThrow();
    expect(words).toHaveLength(3);
    await vi.waitFor(() => expect(s.stats()).toMatchObject({ aborted: 1, completed: 0, running: 0 }), { interval: 5 });
  });

  it('--drop-rate 1 destroys a plain request before any response byte', async () => {
    const { sim: s, client } = await sim({ dropRate: 1 });
    await expect(client.chat.completions.create({ model: 'sim-small', messages })).rejects.toBeInstanceOf(APIConnectionError);
    await expect(chat(s.url)).rejects.toThrow();
    await expect(client.embeddings.create({ model: 'sim-small', input: 'x' })).rejects.toBeInstanceOf(APIConnectionError);
    await vi.waitFor(() => expect(s.stats()).toMatchObject({ aborted: 3, completed: 0 }), { interval: 5 });
  });

  it('--slow-start-ms answers 503 on /health and inference until the model has loaded', async () => {
    const { sim: s, client } = await sim({ slowStartMs: 400 });
    expect((await fetch(`${s.url}/health`)).status).toBe(503);
    const res = await chat(s.url);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: { type: 'ServiceUnavailableError', code: 503 } });
    expect((await client.models.list()).data).toHaveLength(1);
    await vi.waitFor(async () => expect((await fetch(`${s.url}/health`)).status).toBe(200), { timeout: 5000, interval: 50 });
    const ok = await client.chat.completions.create({ model: 'sim-small', messages, max_tokens: 2 });
    expect(ok.usage?.completion_tokens).toBe(2);
  });
});
