import OpenAI, { BadRequestError, NotFoundError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SIM_OPTIONS } from '../../sim/sim-options.js';
import { startSim } from '../../sim/sim-server.js';
import type { SimServer } from '../../sim/sim-server.js';

let sim: SimServer;
let client: OpenAI;

beforeAll(async () => {
  sim = await startSim({
    ...DEFAULT_SIM_OPTIONS,
    port: 0,
    models: ['sim-small', 'sim-large'],
    tokensPerSecond: 20_000,
    maxSeqs: 64,
    ttftMs: 0,
    seed: 7,
    embeddingDim: 12,
  });
  client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0 });
});

afterAll(async () => {
  await sim.close();
});

function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${sim.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** The `data:` payloads of an SSE body, checking that every event is one `data:` line. */
async function sseEvents(res: Response): Promise<string[]> {
  const text = await res.text();
  expect(text.endsWith('\n\n')).toBe(true);
  return text
    .slice(0, -2)
    .split('\n\n')
    .map((event) => {
      expect(event.startsWith('data: ')).toBe(true);
      expect(event.includes('\n')).toBe(false);
      return event.slice('data: '.length);
    });
}

const hello = [{ role: 'user' as const, content: 'Tell me about rail yards.' }];

describe('chat completions', () => {
  it('streams exactly the plain answer for the same seed and prompt', async () => {
    // Natural answers are 16..96 tokens; 200 lets this one end on its own (finish_reason stop).
    const plain = await client.chat.completions.create({ model: 'sim-small', messages: hello, max_tokens: 200 });
    const choice = plain.choices[0];
    expect(plain.id).toMatch(/^chatcmpl-/);
    expect(plain.object).toBe('chat.completion');
    expect(choice?.message.role).toBe('assistant');
    expect(choice?.finish_reason).toBe('stop');
    const content = choice?.message.content ?? '';
    expect(content.length).toBeGreaterThan(0);

    const again = await client.chat.completions.create({ model: 'sim-small', messages: hello, max_tokens: 200 });
    expect(again.choices[0]?.message.content).toBe(content);

    const stream = await client.chat.completions.create({ model: 'sim-small', messages: hello, max_tokens: 200, stream: true });
    const deltas: string[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (c?.delta.content) deltas.push(c.delta.content);
      if (c?.finish_reason) finish = c.finish_reason;
    }
    expect(deltas.join('')).toBe(content);
    // One token is one word: the first bare, the rest with their leading space.
    expect(deltas.slice(1).every((d) => /^ \S+$/.test(d))).toBe(true);
    expect(deltas).toHaveLength(plain.usage?.completion_tokens ?? -1);
    expect(finish).toBe('stop');
    expect(plain.usage).toMatchObject({
      prompt_tokens: Math.ceil(hello[0]!.content.length / 4),
      total_tokens: (plain.usage?.prompt_tokens ?? 0) + deltas.length,
    });

    const otherModel = await client.chat.completions.create({ model: 'sim-large', messages: hello, max_tokens: 200 });
    expect(otherModel.choices[0]?.message.content).not.toBe(content);
  });

  it('ends an include_usage stream with a usage chunk, as OpenAI does', async () => {
    const res = await post('/v1/chat/completions', {
      model: 'sim-small',
      messages: hello,
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const events = await sseEvents(res);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as Record<string, unknown>);
    // role chunk, 5 tokens, finish chunk, usage chunk
    expect(chunks).toHaveLength(8);
    const id = chunks[0]?.['id'];
    for (const c of chunks) {
      expect(Object.keys(c).slice(0, 4)).toEqual(['id', 'object', 'created', 'model']);
      expect(c).toMatchObject({ id, object: 'chat.completion.chunk', model: 'sim-small' });
    }
    expect(chunks[0]).toMatchObject({
      choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }],
      usage: null,
    });
    expect(chunks[1]).toMatchObject({ choices: [{ index: 0, logprobs: null, finish_reason: null }], usage: null });
    expect(chunks[6]).toMatchObject({ choices: [{ index: 0, delta: {}, finish_reason: 'length' }], usage: null });
    expect(chunks[7]).toMatchObject({
      choices: [],
      usage: { prompt_tokens: Math.ceil(hello[0]!.content.length / 4), completion_tokens: 5 },
    });
  });

  it('leaves usage off the chunks without include_usage', async () => {
    const res = await post('/v1/chat/completions', { model: 'sim-small', messages: hello, max_tokens: 2, stream: true });
    const events = await sseEvents(res);
    expect(events).toHaveLength(1 + 2 + 1 + 1);
    for (const e of events.slice(0, -1)) expect(JSON.parse(e)).not.toHaveProperty('usage');
  });

  it('stops at max_tokens and max_completion_tokens with finish_reason length', async () => {
    const a = await client.chat.completions.create({ model: 'sim-small', messages: hello, max_tokens: 3 });
    expect(a.choices[0]?.finish_reason).toBe('length');
    expect(a.choices[0]?.message.content?.split(' ')).toHaveLength(3);
    expect(a.usage?.completion_tokens).toBe(3);
    const b = await client.chat.completions.create({ model: 'sim-small', messages: hello, max_completion_tokens: 4 });
    expect(b.usage?.completion_tokens).toBe(4);
    expect(b.choices[0]?.finish_reason).toBe('length');
  });

  it('echoes every turn of the conversation when the last user message starts with echo:', async () => {
    const res = await client.chat.completions.create({
      model: 'sim-small',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'first turn' },
        { role: 'assistant', content: 'ok then' },
        { role: 'user', content: 'echo: repeat   this' },
      ],
    });
    expect(res.choices[0]?.message.content).toBe('be brief first turn ok then repeat this');
    expect(res.choices[0]?.finish_reason).toBe('stop');
    const cut = await client.chat.completions.create({
      model: 'sim-small',
      messages: [{ role: 'user', content: 'echo: one two three' }],
      max_tokens: 2,
    });
    expect(cut.choices[0]).toMatchObject({ message: { content: 'one two' }, finish_reason: 'length' });
  });

  it('answers vLLM error bodies for an unknown model, bad JSON and missing messages', async () => {
    await expect(client.chat.completions.create({ model: 'gpt-9', messages: hello })).rejects.toBeInstanceOf(NotFoundError);
    const notFound = await post('/v1/chat/completions', { model: 'x', messages: hello });
    expect(notFound.status).toBe(404);
    expect(await notFound.json()).toEqual({
      error: { message: 'The model `x` does not exist.', type: 'NotFoundError', param: 'model', code: 404 },
    });
    const badJson = await post('/v1/chat/completions', '{"model":');
    expect(badJson.status).toBe(400);
    expect(await badJson.json()).toMatchObject({ error: { type: 'BadRequestError', code: 400 } });
    await expect(
      client.chat.completions.create({ model: 'sim-small' } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming),
    ).rejects.toBeInstanceOf(BadRequestError);
    const missing = await post('/v1/chat/completions', { model: 'sim-small' });
    expect(await missing.json()).toMatchObject({ error: { type: 'BadRequestError', param: 'messages', code: 400 } });
  });

  it('echoes x-request-id', async () => {
    const res = await post('/v1/chat/completions', { messages: hello, max_tokens: 1 }, { 'x-request-id': 'req-42' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toBe('req-42');
    expect(res.headers.get('content-type')).toBe('application/json');
  });
});

describe('completions', () => {
  it('streams the same text as the plain answer and honours max_tokens', async () => {
    const plain = await client.completions.create({ model: 'sim-small', prompt: 'Say this is a test', max_tokens: 7 });
    expect(plain.id).toMatch(/^cmpl-/);
    expect(plain.object).toBe('text_completion');
    expect(plain.choices[0]?.finish_reason).toBe('length');
    expect(plain.usage).toEqual({ prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 });
    const stream = await client.completions.create({
      model: 'sim-small',
      prompt: 'Say this is a test',
      max_tokens: 7,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(plain.choices[0]?.text);
    expect(usage).toEqual(plain.usage);
  });

  it('echoes a prompt that starts with echo:', async () => {
    const res = await client.completions.create({ model: 'sim-small', prompt: 'echo: a b c' });
    expect(res.choices[0]).toMatchObject({ text: 'a b c', finish_reason: 'stop' });
  });
});

describe('embeddings', () => {
  it('returns deterministic unit vectors of embeddingDim through the SDK (base64)', async () => {
    const res = await client.embeddings.create({ model: 'sim-small', input: ['The food was delicious', 'and the waiter...'] });
    expect(res.object).toBe('list');
    expect(res.data.map((d) => d.index)).toEqual([0, 1]);
    const [a, b] = res.data.map((d) => d.embedding);
    expect(a).toHaveLength(12);
    expect(Math.hypot(...(a ?? []))).toBeCloseTo(1, 5);
    expect(a).not.toEqual(b);
    expect(res.usage).toEqual({ prompt_tokens: 6 + 5, total_tokens: 11 });
    const again = await client.embeddings.create({ model: 'sim-small', input: 'The food was delicious' });
    expect(again.data[0]?.embedding).toEqual(a);
  });

  it('answers float arrays when asked', async () => {
    const res = await post('/v1/embeddings', { model: 'sim-small', input: 'hi', encoding_format: 'float' });
    const body = (await res.json()) as { data: Array<{ object: string; embedding: number[] }>; model: string };
    expect(body.model).toBe('sim-small');
    expect(body.data[0]?.object).toBe('embedding');
    expect(body.data[0]?.embedding).toHaveLength(12);
    expect(Math.hypot(...(body.data[0]?.embedding ?? []))).toBeCloseTo(1, 10);
  });
});

describe('models, health, routes', () => {
  it('lists the models in OpenAI format', async () => {
    const page = await client.models.list();
    expect(page.data.map((m) => [m.id, m.object, m.owned_by])).toEqual([
      ['sim-small', 'model', 'switchyard-sim'],
      ['sim-large', 'model', 'switchyard-sim'],
    ]);
    expect(typeof page.data[0]?.created).toBe('number');
  });

  it('answers /health 200 with an empty body, unknown paths 404 and wrong methods 405', async () => {
    const health = await fetch(`${sim.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('');
    const missing = await fetch(`${sim.url}/v2/nothing`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ detail: 'Not Found' });
    expect((await fetch(`${sim.url}/v1/chat/completions`)).status).toBe(405);
  });
});

describe('metrics', () => {
  it('writes vLLM exposition text that parses line by line and matches the stats', async () => {
    await client.chat.completions.create({ model: 'sim-large', messages: hello, max_tokens: 2 });
    const res = await fetch(`${sim.url}/metrics`);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    expect(text.endsWith('\n')).toBe(true);
    const samples = new Map<string, number>();
    const typed = new Set<string>();
    for (const line of text.slice(0, -1).split('\n')) {
      const meta = /^# (HELP|TYPE) (vllm:[a-z_]+) (.+)$/.exec(line);
      if (meta) {
        if (meta[1] === 'TYPE') {
          expect(['gauge', 'counter']).toContain(meta[3]);
          typed.add(meta[2] ?? '');
        }
        continue;
      }
      const sample = /^(vllm:[a-z_]+)\{model_name="([^"]+)",engine="0"(,finished_reason="(stop|length|abort)")?\} (\S+)$/.exec(line);
      expect(sample, line).not.toBeNull();
      expect(typed).toContain(sample?.[1]);
      const value = Number(sample?.[5]);
      expect(Number.isFinite(value), line).toBe(true);
      samples.set(`${sample?.[1]}|${sample?.[2]}${sample?.[4] ? `|${sample[4]}` : ''}`, value);
    }
    for (const name of ['num_requests_running', 'num_requests_waiting', 'kv_cache_usage_perc', 'gpu_cache_usage_perc']) {
      expect(samples.get(`vllm:${name}|sim-small`), name).toBe(0);
    }
    expect(samples.get('vllm:request_success_total|sim-large|length')).toBe(1);
    const stats = sim.stats();
    const sum = (name: string): number =>
      (samples.get(`vllm:${name}|sim-small`) ?? 0) + (samples.get(`vllm:${name}|sim-large`) ?? 0);
    expect(sum('prompt_tokens_total')).toBe(stats.promptTokens);
    expect(sum('generation_tokens_total')).toBe(stats.generationTokens);
    expect(stats.generationTokens).toBeGreaterThan(0);
  });

  it('serves /sim/stats as JSON', async () => {
    const res = await fetch(`${sim.url}/sim/stats`);
    const body = (await res.json()) as Record<string, number>;
    expect(Object.keys(body).sort()).toEqual(
      ['aborted', 'completed', 'generationTokens', 'peakInFlight', 'peakRunning', 'promptTokens', 'received', 'running', 'waiting'],
    );
    expect(body['received']).toBeGreaterThan(0);
    expect(body['completed']).toBeGreaterThan(0);
  });
});
