import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { APIError } from 'openai';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findLlamaCpp, llamaMetric, llamaSlots, startLlamaServer, type LlamaCppBuild, type LlamaServer } from '../helpers/llamacpp.js';
import { eventually, startCli, type RunningProcess } from '../helpers/processes.js';
import { dropSchema, PG_URL, query, REDIS_URL, uniqueName } from '../helpers/services.js';

/**
 * Switchyard in front of a real engine: two llama.cpp `llama-server` processes (two sequence
 * slots each, CPU, a tiny random-weight model) registered through the admin API, each with its
 * `switchyard agent`, a scheduler, a gateway and a worker sharing the machine's Redis (own prefix)
 * and Postgres (own schema); the official SDK as the client. scripts/llama-server.sh builds the
 * engine and the model (cached outside the repository); without them the suite is skipped,
 * except in CI, where .ci/run builds them first.
 *
 * The model never samples its end-of-sequence token (scripts/tiny-gguf.py), so every answer is
 * exactly `max_tokens` long.
 */
const found = findLlamaCpp();
const build: LlamaCppBuild | undefined = 'missing' in found ? undefined : found;
if (build === undefined) {
  const why = (found as { missing: string }).missing;
  if (process.env['CI'] !== undefined) throw new Error(`the real-engine suite cannot run in CI: ${why} (.ci/run builds it)`);
  console.warn(`test/e2e/llamacpp.test.ts SKIPPED: ${why}`);
}

const MODEL = 'tiny';
/** Whole server (-c): 2 slots of 2,048 tokens each. */
const CONTEXT = 4096;
const SLOTS = 2;
const ADMIN = uniqueName('admin');
const schema = uniqueName('sy_llama');
const prefix = `${uniqueName('sytest')}:`;
const env: NodeJS.ProcessEnv = {
  DATABASE_URL: PG_URL,
  SWITCHYARD_DATABASE_SCHEMA: schema,
  REDIS_URL,
  SWITCHYARD_REDIS_PREFIX: prefix,
  SWITCHYARD_ADMIN_TOKEN: ADMIN,
  SWITCHYARD_USAGE_FLUSH_INTERVAL_MS: '200',
  // Token budgets large enough that the sequence limit (2 per node) is what binds.
  SWITCHYARD_CAPACITY_HORIZON_S: '600',
};
const started: RunningProcess[] = [];
const engines: Record<string, LlamaServer> = {};
let gw: RunningProcess;
let scheduler: RunningProcess;
let client: OpenAI;

async function track(p: Promise<RunningProcess>): Promise<RunningProcess> {
  const proc = await p;
  started.push(proc);
  return proc;
}

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${gw.url}/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

interface NodeView {
  id: string;
  live: { healthy: boolean; fresh: boolean; report: { running: number; waiting: number; engineDown?: boolean } | null; learnedTokensPerSecond: number | null } | null;
}

async function node(id: string): Promise<NodeView> {
  return (await admin('GET', `/nodes/${id}`)).json as unknown as NodeView;
}

async function gatewayMetric(pattern: RegExp): Promise<number> {
  const m = pattern.exec(await (await fetch(`${gw.url}/metrics`)).text());
  return m ? Number(m[1]) : 0;
}

function startEngine(port?: number): Promise<LlamaServer> {
  // --embeddings: this llama-server serves /v1/embeddings (mean pooling) beside generation.
  return startLlamaServer(build as LlamaCppBuild, {
    parallel: SLOTS, contextSize: CONTEXT, alias: MODEL, extraArgs: ['--embeddings', '--pooling', 'mean'], ...(port === undefined ? {} : { port }),
  });
}

function startAgent(id: string, joinToken: string, engine: LlamaServer): Promise<RunningProcess> {
  return track(
    startCli(['agent', '--scheduler', scheduler.url, '--node-id', id, '--join-token', joinToken, '--engine-url', engine.url, '--metrics-port', '0'], 'agent running', env),
  );
}

const ask = (maxTokens: number, content = 'Tell me a story.') =>
  client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: maxTokens });

/** Text the model wrote: valid UTF-8 (no replacement characters), never empty. */
function expectText(text: string | null | undefined): void {
  expect(text).toBeTruthy();
  expect(text).not.toContain('\uFFFD');
}

beforeAll(async () => {
  if (build === undefined) return;
  const [a, b] = await Promise.all([startEngine(), startEngine()]);
  engines['llama-a'] = a;
  engines['llama-b'] = b;
  const config = join(mkdtempSync(join(tmpdir(), 'switchyard-test-')), 'regions.yaml');
  // The region declares no node: both register through the admin API, as in a deployment.
  writeFileSync(config, 'regions:\n  - id: r\n    residency: eu\n    clusters:\n      - id: r-c\n');
  scheduler = await track(startCli(['scheduler', '--config', config, '--scheduler-port', '0', '--port', '0'], 'scheduler listening', env));
  [gw] = await Promise.all([
    track(startCli(['gateway', '--config', config, '--port', '0'], 'gateway listening', env)),
    track(startCli(['worker', '--config', config, '--port', '0'], 'worker running', env)),
  ]);
  for (const [id, engine] of Object.entries(engines)) {
    const registered = await admin('POST', '/nodes', {
      id, region: 'r', cluster: 'r-c', url: engine.url, engine: 'llamacpp', models: [MODEL], capacity: { tokensPerSecond: 5000, maxSequences: SLOTS },
    });
    expect(registered.status).toBe(201);
    await startAgent(id, registered.json['join_token'] as string, engine);
  }
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
  await eventually(async () => {
    const views = await Promise.all(Object.keys(engines).map(node));
    return views.every((v) => v.live?.fresh === true && v.live.healthy);
  }, 20_000, 'both nodes healthy with fresh agent reports');
}, 60_000);

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await Promise.all(Object.values(engines).map((e) => e.stop()));
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
  await dropSchema(schema);
});

describe.skipIf(build === undefined)('a real llama.cpp server behind Switchyard', () => {
  it('lists the model, answers chat (usage as the engine counted it) and completions', async () => {
    expect((await client.models.list()).data.map((m) => m.id)).toEqual([MODEL]);

    const { data: chat, response } = await ask(12).withResponse();
    expect(['llama-a', 'llama-b']).toContain(response.headers.get('x-switchyard-node'));
    expectText(chat.choices[0]?.message.content);
    expect(chat.choices[0]?.finish_reason).toBe('length');
    expect(chat.usage?.completion_tokens).toBe(12);
    expect(chat.usage?.prompt_tokens).toBeGreaterThan(5); // the chat template's markers and the message

    const completion = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 7 });
    expectText(completion.choices[0]?.text);
    expect(completion.choices[0]?.finish_reason).toBe('length');
    expect(completion.usage).toMatchObject({ completion_tokens: 7 });
  });

  it('streams, with and without include_usage; every stream is recorded with its usage', async () => {
    const plainId = uniqueName('plain');
    const plain = await client.chat.completions.create(
      { model: MODEL, messages: [{ role: 'user', content: 'Stream, please.' }], max_tokens: 10, stream: true },
      { headers: { 'x-request-id': plainId } },
    );
    let text = '';
    const finishes: string[] = [];
    for await (const chunk of plain) {
      expect(chunk.usage ?? null).toBeNull();
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.choices[0]?.finish_reason) finishes.push(chunk.choices[0].finish_reason);
    }
    expectText(text);
    expect(finishes).toEqual(['length']);

    const usageId = uniqueName('usage');
    const counted = await client.chat.completions.create(
      { model: MODEL, messages: [{ role: 'user', content: 'Stream, please.' }], max_tokens: 9, stream: true, stream_options: { include_usage: true } },
      { headers: { 'x-request-id': usageId } },
    );
    const chunks = [];
    for await (const chunk of counted) chunks.push(chunk);
    const last = chunks.at(-1);
    expect(last?.choices).toEqual([]);
    expect(last?.usage?.completion_tokens).toBe(9);
    expect(chunks.filter((c) => c.usage)).toHaveLength(1);

    // Usage records in Postgres, the stream without include_usage too (the gateway asked the
    // engine for it and kept it from the client).
    const rows = async () =>
      query<{ request_id: string; node_id: string; model: string; prompt_tokens: number; completion_tokens: number; status: number }>(
        `SELECT request_id, node_id, model, prompt_tokens, completion_tokens, status FROM "${schema}".usage_records WHERE request_id = ANY($1)`,
        [[plainId, usageId]],
      );
    await eventually(async () => (await rows()).length === 2, 10_000, 'both usage records');
    const byId = new Map((await rows()).map((r) => [r.request_id, r]));
    expect(byId.get(plainId)).toMatchObject({ model: MODEL, completion_tokens: 10, status: 200 });
    expect(byId.get(usageId)).toMatchObject({ model: MODEL, completion_tokens: 9, prompt_tokens: last?.usage?.prompt_tokens, status: 200 });
    for (const r of byId.values()) expect(['llama-a', 'llama-b']).toContain(r.node_id);
  });

  it('continuing a text (what mid-stream failover sends): a trailing assistant message, and a completions prompt with the text so far', async () => {
    // Greedy decoding: the first half plus its continuation is the uninterrupted answer.
    const messages = [{ role: 'user' as const, content: 'Tell me a story.' }];
    const greedy = (maxTokens: number) => client.chat.completions.create({ model: MODEL, messages, max_tokens: maxTokens, temperature: 0 });
    const whole = (await greedy(16)).choices[0]?.message.content ?? '';
    const half = (await greedy(8)).choices[0]?.message.content ?? '';
    expectText(half);
    expect(whole.startsWith(half)).toBe(true);
    // As vLLM and SGLang take it, and without the flags (llama-server prefills a trailing
    // assistant message by default). Either way its answer repeats the text it was given.
    for (const flags of [{ continue_final_message: true, add_generation_prompt: false }, {}]) {
      const continued = await client.chat.completions.create({
        model: MODEL, messages: [...messages, { role: 'assistant', content: half }], max_tokens: 8, temperature: 0, ...flags,
      } as OpenAI.ChatCompletionCreateParamsNonStreaming);
      expect(continued.choices[0]?.message.content).toBe(whole);
      expect(continued.usage?.completion_tokens).toBe(8);
    }
    // The vLLM flag alone is refused: this llama-server also needs add_generation_prompt: false.
    await expect(
      client.chat.completions.create({
        model: MODEL, messages: [...messages, { role: 'assistant', content: half }], max_tokens: 8, continue_final_message: true,
      } as OpenAI.ChatCompletionCreateParamsNonStreaming),
    ).rejects.toMatchObject({ status: 400, message: expect.stringContaining('add_generation_prompt') as unknown });

    const prompt = 'Once upon a time';
    const complete = async (text: string, maxTokens: number) =>
      (await client.completions.create({ model: MODEL, prompt: text, max_tokens: maxTokens, temperature: 0 })).choices[0]?.text ?? '';
    const wholeText = await complete(prompt, 16);
    const firstHalf = await complete(prompt, 8);
    // Completions answer only the new text.
    expect(firstHalf + (await complete(prompt + firstHalf, 8))).toBe(wholeText);
  });

  it('embeddings: one unit vector per input, as wide as the model', async () => {
    const res = await client.embeddings.create({ model: MODEL, input: ['first text', 'second text'] });
    expect(res.data).toHaveLength(2);
    for (const item of res.data) {
      expect(item.embedding).toHaveLength(32);
      expect(Math.hypot(...item.embedding)).toBeCloseTo(1, 3);
    }
    expect(res.data[0]?.embedding).not.toEqual(res.data[1]?.embedding);
    expect(res.usage.prompt_tokens).toBeGreaterThan(0);
  });

  it('a prompt longer than the context is a 400 context_length_exceeded, streamed or not', async () => {
    const long = 'word '.repeat(CONTEXT);
    for (const stream of [false, true]) {
      const err = await client.chat.completions
        .create({ model: MODEL, messages: [{ role: 'user', content: long }], max_tokens: 4, stream })
        .then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(APIError);
      expect(err).toMatchObject({ status: 400, code: 'context_length_exceeded', type: 'invalid_request_error' });
      expect((err as APIError).message).toMatch(/context size/);
    }
  });

  it('a client that aborts a stream frees the engine slot at once', async () => {
    const abort = new AbortController();
    const { data: stream, response } = await client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'Go on and on.' }], max_tokens: 2000, stream: true }, { signal: abort.signal })
      .withResponse();
    const engine = engines[response.headers.get('x-switchyard-node') as string] as LlamaServer;
    const predictedBefore = await llamaMetric(engine, 'llamacpp:tokens_predicted_total');
    let seen = 0;
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) seen += 1;
        if (seen === 3) {
          expect((await llamaSlots(engine)).filter((s) => s.is_processing)).toHaveLength(1);
          abort.abort();
        }
      }
    } catch (err) {
      expect(err).toBeInstanceOf(OpenAI.APIUserAbortError);
    }
    await eventually(async () => (await llamaSlots(engine)).every((s) => !s.is_processing), 5000, 'the slot to be free');
    // The engine stopped early: it counts what the slot generated when it is released.
    const generated = (await llamaMetric(engine, 'llamacpp:tokens_predicted_total')) - predictedBefore;
    expect(generated).toBeGreaterThanOrEqual(3);
    expect(generated).toBeLessThan(2000);
  });

  it('more requests than slots wait in the gateway queue, never in the engine; the agents report the load and capacity is learned', async () => {
    const deferred: number[] = [];
    const running: number[] = [];
    let done = false;
    // Sample each engine's own queue (llama.cpp defers what finds no free slot) while the burst runs.
    const sampler = (async () => {
      while (!done) {
        for (const e of Object.values(engines)) {
          deferred.push(await llamaMetric(e, 'llamacpp:requests_deferred'));
          running.push(await llamaMetric(e, 'llamacpp:requests_processing'));
        }
      }
    })();
    // A closed loop of more clients than the fleet has slots, until the scheduler has learned a
    // node's capacity from its agent's reports. It learns only from a report that finds the node
    // running most of its slots just after a request ended (llama.cpp counts tokens then): long
    // answers (about 1 s each), so that a slot spends far more time generating than between two
    // requests. (Both nodes learn within seconds on an idle machine; on a heavily loaded one a node
    // can go a minute without such a report, so one node is what is awaited.)
    const queued: number[] = [];
    const reports: NodeView[] = [];
    const learned = async (): Promise<boolean> => {
      const views = await Promise.all(Object.keys(engines).map(node));
      reports.push(...views);
      return views.some((v) => (v.live?.learnedTokensPerSecond ?? 0) > 0);
    };
    const clients = Array.from({ length: 3 * SLOTS }, async () => {
      while (!done) {
        const { data, response } = await ask(1800).withResponse();
        expect(data.usage?.completion_tokens).toBe(1800);
        queued.push(Number(response.headers.get('x-switchyard-queue-ms')));
      }
    });
    try {
      await eventually(learned, 60_000, 'a node to have a learned capacity');
    } finally {
      done = true;
    }
    await Promise.all([sampler, ...clients]);
    // Four at a time ran; the rest waited in the gateway, not in llama.cpp.
    expect(queued.filter((ms) => ms > 0).length).toBeGreaterThan(0);
    expect(Math.max(...running)).toBe(SLOTS);
    expect(Math.max(...deferred)).toBe(0);
    expect(Math.max(...reports.map((r) => r.live?.report?.running ?? 0))).toBe(SLOTS);
    expect(Math.max(...reports.map((r) => r.live?.report?.waiting ?? 0))).toBe(0);
    const learnedNode = reports.findLast((r) => (r.live?.learnedTokensPerSecond ?? 0) > 0) as NodeView;
    const exported = await gatewayMetric(new RegExp(`switchyard_node_learned_tokens_per_second\\{[^}]*node="${learnedNode.id}"[^}]*\\} ([\\d.e+]+)`));
    expect(exported).toBeGreaterThan(0);
  }, 120_000);

  it('the Responses API: plain, streamed and background', async () => {
    const plain = await client.responses.create({ model: MODEL, input: 'Say something.', max_output_tokens: 8 });
    expect(plain.status).toBe('incomplete');
    expectText(plain.output_text);
    expect(plain.usage?.output_tokens).toBe(8);

    const stream = await client.responses.create({ model: MODEL, input: 'Say more.', max_output_tokens: 8, stream: true });
    let deltas = '';
    const types: string[] = [];
    let final = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') deltas += event.delta;
      if (event.type === 'response.incomplete' || event.type === 'response.completed') {
        final = event.response.output.flatMap((item) => (item.type === 'message' ? item.content : [])).map((c) => (c.type === 'output_text' ? c.text : '')).join('');
      }
    }
    expect(types[0]).toBe('response.created');
    expect(types).toContain('response.output_text.delta');
    expectText(deltas);
    expect(final).toBe(deltas);

    const queued = await client.responses.create({ model: MODEL, input: 'Later, please.', max_output_tokens: 8, background: true });
    expect(queued.status).toBe('queued');
    await eventually(async () => !['queued', 'in_progress'].includes((await client.responses.retrieve(queued.id)).status ?? ''), 20_000, 'the background response');
    const done = await client.responses.retrieve(queued.id);
    expect(done.error).toBeNull();
    expectText(done.output_text);
    expect(done.usage?.output_tokens).toBe(8);
  });

  /**
   * Kills llama-a (SIGKILL), runs `during` while it is dead, restarts it on the same port and
   * returns the times (ms) the docs quote: until the agent reported it down, and from the
   * restarted engine listening until this gateway counted the node available again.
   */
  async function killAndRestart(during: () => Promise<void>): Promise<{ downMs: number; restartMs: number; recoverMs: number }> {
    const victim = engines['llama-a'] as LlamaServer;
    await victim.kill();
    const killedAt = Date.now();
    await during();
    await eventually(async () => (await node('llama-a')).live?.report?.engineDown === true, 10_000, 'the agent to report the engine down');
    const downMs = Date.now() - killedAt;
    const restartedAt = Date.now();
    engines['llama-a'] = await startEngine(victim.port);
    const readyAt = Date.now();
    await eventually(async () => (await node('llama-a')).live?.healthy === true, 30_000, 'the gateway to count the engine available');
    const recoverMs = Date.now() - readyAt;
    // It gets traffic again: four long requests at once need both nodes' slots.
    const nodes = await Promise.all(Array.from({ length: 2 * SLOTS }, async () => (await ask(400).withResponse()).response.headers.get('x-switchyard-node')));
    expect(nodes).toContain('llama-a');
    return { downMs, restartMs: readyAt - restartedAt, recoverMs };
  }

  it('an engine killed mid-stream: the stream goes on on the other node as one stream, nothing repeated', async () => {
    const { data: stream, response } = await client.chat.completions
      // Long enough (a few seconds) that the engine is still generating when it is killed.
      .create({ model: MODEL, stream: true, stream_options: { include_usage: true }, max_tokens: 1500, messages: [{ role: 'user', content: 'Tell a long story.' }] })
      .withResponse();
    const first = response.headers.get('x-switchyard-node') as string;
    const victim = engines[first] as LlamaServer;
    let text = '';
    let seenAtKill = '';
    let chunks = 0;
    let usage: OpenAI.CompletionUsage | undefined;
    const ids = new Set<string>();
    for await (const chunk of stream) {
      ids.add(chunk.id);
      text += chunk.choices[0]?.delta.content ?? '';
      usage = chunk.usage ?? usage;
      if (++chunks === 10) {
        seenAtKill = text;
        await victim.kill();
      }
    }
    expect(seenAtKill.length).toBeGreaterThan(0);
    expect(text.startsWith(seenAtKill)).toBe(true);
    // llama.cpp repeats the text it is asked to continue: the gateway drops that repeat.
    expect(text.indexOf(seenAtKill, seenAtKill.length)).toBe(-1);
    expect(ids.size).toBe(1);
    // Every answer of this model is exactly max_tokens long: both legs together.
    expect(usage?.completion_tokens).toBe(1500);
    expectText(text);
    expect(await gatewayMetric(/switchyard_stream_failovers_total\{[^}]*result="continued"[^}]*\} (\d+)/)).toBeGreaterThanOrEqual(1);
    engines[first] = await startEngine(victim.port);
    await eventually(async () => (await node(first)).live?.healthy === true, 30_000, 'the killed engine back');
  }, 90_000);

  it('an engine killed and restarted while idle: back as soon as its agent reports it', async () => {
    const t = await killAndRestart(async () => undefined);
    console.info(`llama.cpp killed while idle: reported down after ${t.downMs} ms; restarted in ${t.restartMs} ms; available ${t.recoverMs} ms after it listened`);
  });

  it('an engine killed under traffic: no request fails, and the node gets traffic again once the gateway restores it', async () => {
    const t = await killAndRestart(async () => {
      // Every request still succeeds: the gateway retries a refused connection on the other node
      // (until the agent's report or the breaker takes the node out of placement).
      for (let i = 0; i < 4; i++) {
        const { data, response } = await ask(4).withResponse();
        expect(response.headers.get('x-switchyard-node')).toBe('llama-b');
        expectText(data.choices[0]?.message.content);
      }
    });
    const ejected = gw.output.some((l) => l.includes('"nodeId":"llama-a"') && l.includes('"msg":"node ejected"'));
    console.info(
      `llama.cpp killed under traffic: reported down after ${t.downMs} ms; restarted in ${t.restartMs} ms; ` +
        `available ${t.recoverMs} ms after it listened (circuit breaker ${ejected ? 'tripped' : 'not tripped'})`,
    );
  }, 60_000);
});
