import OpenAI, { APIError } from 'openai';
import type { Response } from 'openai/resources/responses/responses';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, refusedPort, regionsYaml, simStats, startCli, startGatewayProcess, startSimProcess, type RunningProcess } from '../helpers/processes.js';
import { dropSchema, PG_URL, query, REDIS_URL, uniqueName } from '../helpers/services.js';

/**
 * The Responses API with the official SDK against real processes: a gateway and `switchyard
 * worker` processes sharing the machine's Redis (own prefix) and Postgres (own schema), a sim
 * whose declared sequence limit matches its own (it counts what it was sent).
 */
const schema = uniqueName('sy_resp');
const prefix = `${uniqueName('sytest')}:`;
const started: RunningProcess[] = [];
let sim: RunningProcess;
let sim2: RunningProcess;
let slow: RunningProcess;
let gw: RunningProcess;
let worker: RunningProcess;
let yaml: string;
let client: OpenAI;
const redis = new Redis(REDIS_URL);

async function track(p: Promise<RunningProcess>): Promise<RunningProcess> {
  const proc = await p;
  started.push(proc);
  return proc;
}

const env: NodeJS.ProcessEnv = {
  DATABASE_URL: PG_URL,
  SWITCHYARD_DATABASE_SCHEMA: schema,
  REDIS_URL,
  SWITCHYARD_REDIS_PREFIX: prefix,
  // Short enough that a test sees a killed worker's job picked up again, and idle conversations archived.
  SWITCHYARD_JOB_LOCK_MS: '2000',
  SWITCHYARD_CONVERSATION_IDLE_MS: '1500',
};

function startWorker(): Promise<RunningProcess> {
  return startCli(['worker', '--config', configPath, '--port', '0'], 'worker running', env);
}
let configPath = '';

/** The sim echoes the words after `echo:` (and every earlier turn): one token per word. */
const longEcho = (words: number): string => `echo: ${'w '.repeat(words)}`;

async function settled(id: string, timeoutMs = 30_000): Promise<Response> {
  let r = await client.responses.retrieve(id);
  const deadline = Date.now() + timeoutMs;
  while (['queued', 'in_progress'].includes(r.status ?? '') && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 50));
    r = await client.responses.retrieve(id);
  }
  return r;
}

beforeAll(async () => {
  [sim, sim2, slow] = await Promise.all([
    track(startSimProcess(['--max-seqs', '16', '--tokens-per-second', '8000', '--ttft-ms', '5'])),
    track(startSimProcess(['--max-seqs', '16', '--tokens-per-second', '8000', '--ttft-ms', '5'])),
    // Slow enough (200 tokens/s) that a long answer can be cancelled, or its worker killed, mid-way.
    track(startSimProcess(['--models', 'slow-model', '--tokens-per-second', '200', '--ttft-ms', '5'])),
  ]);
  yaml = regionsYaml([
    {
      id: 'r',
      nodes: [
        { id: 'n1', url: sim.url, maxSequences: 16, tokensPerSecond: 8000 },
        { id: 'n2', url: sim2.url, maxSequences: 16, tokensPerSecond: 8000 },
        { id: 'slow', url: slow.url, models: ['slow-model'], tokensPerSecond: 200 },
        // A node that refuses connections: its model's background jobs fail after their retries.
        { id: 'dead', url: `http://127.0.0.1:${await refusedPort()}`, models: ['dead-model'] },
      ],
    },
  ]);
  gw = await track(startGatewayProcess(yaml, [], env));
  configPath = (gw.proc.spawnargs[gw.proc.spawnargs.indexOf('--config') + 1] as string);
  worker = await track(startWorker());
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await dropSchema(schema);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
});

describe('Responses API', () => {
  it('responses.create: plain, with usage', async () => {
    const r = await client.responses.create({ model: 'sim-small', input: 'echo: hello responses', max_output_tokens: 50 });
    expect(r.object).toBe('response');
    expect(r.status).toBe('completed');
    expect(r.output_text).toBe('hello responses');
    expect(r.usage?.output_tokens).toBe(2);
    expect(r.usage?.total_tokens).toBe((r.usage?.input_tokens ?? 0) + 2);
    expect((await client.responses.retrieve(r.id)).output_text).toBe('hello responses');
  });

  it('responses.create stream: the SDK gets every event in order, deltas add up to the text', async () => {
    const stream = await client.responses.create({ model: 'sim-small', input: 'tell me a story', stream: true, max_output_tokens: 40 });
    const types: string[] = [];
    let text = '';
    let final: Response | undefined;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed' || event.type === 'response.incomplete') final = event.response;
    }
    expect(types.slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    expect(types.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', final?.status === 'incomplete' ? 'response.incomplete' : 'response.completed']);
    expect(types.filter((t) => t === 'response.output_text.delta').length).toBeGreaterThan(1);
    expect(final?.output_text ?? (final?.output[0] as { content: Array<{ text: string }> } | undefined)?.content[0]?.text).toBe(text);
    expect(final?.usage?.output_tokens).toBeGreaterThan(0);
    expect((await client.responses.retrieve(final?.id as string)).status).toBe(final?.status);
  });

  it('background: returns queued at once, a worker completes it, retrieve polls it', async () => {
    const r = await client.responses.create({ model: 'sim-small', input: 'echo: in the background', background: true });
    expect(r.status).toBe('queued');
    expect(r.background).toBe(true);
    const done = await settled(r.id);
    expect(done.status).toBe('completed');
    expect(done.output_text).toBe('in the background');
  });

  it('background with stream: the events as a worker writes them; a client that drops out resumes with starting_after', async () => {
    // 600 echoed words at 200 tokens/s: 3 s on the worker, so the client leaves mid-way.
    const words = 600;
    const stream = await client.responses.create({ model: 'slow-model', input: longEcho(words), max_output_tokens: words + 10, background: true, stream: true });
    const types: string[] = [];
    let id = '';
    let text = '';
    let last = -1;
    for await (const event of stream) {
      expect(event.sequence_number).toBe(last + 1);
      last = event.sequence_number;
      types.push(event.type);
      if (event.type === 'response.created') {
        id = event.response.id;
        expect(event.response.status).toBe('queued');
      }
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (types.filter((t) => t === 'response.output_text.delta').length === 20) break;
    }
    expect(types.slice(0, 5)).toEqual(['response.created', 'response.queued', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    // Leaving the stream leaves the response running on the worker.
    expect((await client.responses.retrieve(id)).status).toBe('in_progress');
    const resumed = await client.responses.retrieve(id, { stream: true, starting_after: last });
    let final: Response | undefined;
    for await (const event of resumed) {
      expect(event.sequence_number).toBe(last + 1);
      last = event.sequence_number;
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') final = event.response;
    }
    expect(types.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed']);
    expect(text.trim().split(' ').length).toBe(words);
    expect((final?.output[0] as { content: Array<{ text: string }> } | undefined)?.content[0]?.text).toBe(text);
    expect((await client.responses.retrieve(id)).output_text).toBe(text);
    // A finished response replays whole; one created without stream: true cannot be streamed.
    const replay: number[] = [];
    for await (const event of await client.responses.retrieve(id, { stream: true })) replay.push(event.sequence_number);
    expect(replay).toEqual(Array.from({ length: last + 1 }, (_, i) => i));
    const plain = await client.responses.create({ model: 'sim-small', input: 'x', background: true });
    await expect(client.responses.retrieve(plain.id, { stream: true })).rejects.toMatchObject({ status: 400, param: 'stream' });
    await expect(client.responses.retrieve(id, { stream: true, starting_after: -1 })).rejects.toMatchObject({ status: 400, param: 'starting_after' });
    // Deleting the response deletes its events.
    await client.responses.delete(id);
    expect(await redis.exists(`${prefix}resp:events:${id}`)).toBe(0);
  }, 30_000);

  it('a three-turn conversation: later turns see the earlier ones, also after the conversation was archived to Postgres', async () => {
    const t1 = await client.responses.create({ model: 'sim-small', input: 'echo: alpha' });
    const t2 = await client.responses.create({ model: 'sim-small', input: 'echo: beta', previous_response_id: t1.id });
    const t3 = await client.responses.create({ model: 'sim-small', input: 'echo: gamma', previous_response_id: t2.id, background: true });
    const t3done = await settled(t3.id);
    // The sim echoes every turn it received: the earlier inputs and answers reached the engine.
    expect(t2.output_text).toContain('alpha');
    expect(t3done.output_text).toContain('alpha');
    expect(t3done.output_text).toContain('beta');
    expect(t3done.output_text).toContain('gamma');
    // Idle for 1.5 s: the worker's sweep moves the conversation to Postgres and out of Redis.
    const ids = [t1.id, t2.id, t3.id];
    await eventually(
      async () => {
        const rows = await query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".responses WHERE id = ANY($1)`, [ids]);
        const hot = await Promise.all(ids.map((id) => redis.exists(`${prefix}resp:${id}`)));
        return Number(rows[0]?.n) === 3 && hot.every((h) => h === 0);
      },
      20_000,
      'the conversation to move to Postgres',
    );
    const t4 = await client.responses.create({ model: 'sim-small', input: 'echo: delta', previous_response_id: t3.id });
    for (const word of ['alpha', 'beta', 'gamma', 'delta']) expect(t4.output_text).toContain(word);
    expect((await client.responses.retrieve(t1.id)).output_text).toBe('alpha');
  }, 60_000);

  it('follow-up turns go to the node that served the earlier turns; conversations spread over the nodes', async () => {
    const nodesOf = await Promise.all(
      Array.from({ length: 12 }, async (_, c) => {
        const nodes: string[] = [];
        let previous: string | undefined;
        for (let turn = 0; turn < 3; turn++) {
          const { data, response } = await client.responses
            .create({ model: 'sim-small', input: `conversation ${c} turn ${turn}`, max_output_tokens: 4, ...(previous === undefined ? {} : { previous_response_id: previous }) })
            .withResponse();
          nodes.push(response.headers.get('x-switchyard-node') ?? '');
          previous = data.id;
        }
        return nodes;
      }),
    );
    const why = (): string => gw.output.filter((line) => /"msg":"node /.test(line)).join('\n');
    for (const nodes of nodesOf) expect(new Set(nodes).size, why()).toBe(1);
    expect(new Set(nodesOf.map((n) => n[0])).size, why()).toBe(2);
  });

  it('cancel stops a running background response and its upstream request', async () => {
    const before = await simStats(slow.url);
    // 2,000 echoed words at 200 tokens/s: 10 s, long enough to be cancelled mid-way.
    const r = await client.responses.create({ model: 'slow-model', input: longEcho(2000), max_output_tokens: 2100, background: true });
    await eventually(async () => (await client.responses.retrieve(r.id)).status === 'in_progress' && (await simStats(slow.url)).running > 0, 10_000, 'the job to run');
    const cancelled = await client.responses.cancel(r.id);
    expect(cancelled.status).toBe('cancelled');
    await eventually(async () => (await simStats(slow.url)).aborted > before.aborted, 5000, 'the upstream request to be aborted');
    expect((await client.responses.retrieve(r.id)).status).toBe('cancelled');
    // A finished response cannot be cancelled; a foreground one neither.
    const plain = await client.responses.create({ model: 'sim-small', input: 'x', max_output_tokens: 2 });
    await expect(client.responses.cancel(plain.id)).rejects.toMatchObject({ status: 400 });
  }, 30_000);

  it('a worker killed mid-job: another continues it where it stopped — one stream for the follower, exactly one result', async () => {
    // The only worker running the job is a fresh one; the suite's worker steps aside first.
    await worker.stop();
    const doomed = await track(startWorker());
    // 1,000 words at 200 tokens/s: 5 s per run. Streamed, with a client following it.
    const stream = await client.responses.create({ model: 'slow-model', input: longEcho(1000), max_output_tokens: 1100, background: true, stream: true });
    const seen: string[] = [];
    const r = { id: '' };
    let followed = '';
    const following = (async () => {
      for await (const event of stream) {
        if (event.type === 'response.created') r.id = event.response.id;
        if (event.type === 'response.output_text.delta') followed += event.delta;
        seen.push(event.type === 'error' ? `error:${event.code ?? ''}` : event.type);
      }
    })();
    await eventually(() => Promise.resolve(seen.includes('response.output_text.delta')), 10_000, 'the job to stream');
    doomed.proc.kill('SIGKILL');
    worker = await track(startWorker());
    const done = await settled(r.id, 60_000);
    expect(done.status).toBe('completed');
    expect(done.output_text?.split(' ').length).toBe(1000);
    // The follower saw one answer: the first run's text, then the continuation, nothing twice.
    await following;
    expect(seen.at(-1)).toBe('response.completed');
    expect(seen).not.toContain('error:stream_interrupted');
    expect(followed).toBe(done.output_text);
    expect(worker.output.some((l) => l.includes('continuing a background response'))).toBe(true);
    // Streamed again, it is one run's events, whole.
    let text = '';
    const types: string[] = [];
    for await (const event of await client.responses.retrieve(r.id, { stream: true })) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
    }
    expect(types.filter((t) => t === 'response.in_progress')).toHaveLength(1);
    expect(types.at(-1)).toBe('response.completed');
    expect(text).toBe(done.output_text);
    // One usage record for the response, written by the worker that finished it.
    await eventually(
      async () => Number((await query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".usage_records WHERE request_id = $1`, [r.id]))[0]?.n) === 1,
      15_000,
      'its usage record',
    );
    await new Promise((res) => setTimeout(res, 1000));
    expect(Number((await query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".usage_records WHERE request_id = $1`, [r.id]))[0]?.n)).toBe(1);
  }, 90_000);

  it('a worker killed mid-job (not streamed): the next one continues from the text saved so far', async () => {
    await worker.stop();
    const doomed = await track(startWorker());
    // 1,000 words at 200 tokens/s: about 5 s; the run saves its text every half second.
    const r = await client.responses.create({ model: 'slow-model', input: longEcho(1000), max_output_tokens: 1100, background: true });
    // The run's text so far is in the response store (Redis), saved as it goes.
    await eventually(async () => ((await redis.hget(`${prefix}resp:${r.id}`, 'data')) ?? '').includes('"partial"'), 10_000, 'the run to save some text');
    doomed.proc.kill('SIGKILL');
    worker = await track(startWorker());
    const done = await settled(r.id, 60_000);
    expect(done.status).toBe('completed');
    expect(done.output_text?.split(' ')).toEqual(Array.from({ length: 1000 }, () => 'w'));
    expect(worker.output.some((l) => l.includes('continuing a background response'))).toBe(true);
    expect(done.usage?.output_tokens).toBe(1000);
  }, 90_000);

  it('upstream failures are retried with backoff, then the response fails with the error', async () => {
    const t0 = Date.now();
    const r = await client.responses.create({ model: 'dead-model', input: 'x', background: true });
    const done = await settled(r.id, 30_000);
    expect(done.status).toBe('failed');
    expect(done.error?.code).toMatch(/no_healthy_node|upstream_unavailable/);
    // Three attempts with exponential backoff from 1 s: at least 1 s + 2 s between them.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3000);
  }, 40_000);

  it('500 background jobs at once all complete, never more running on the node than its limit', async () => {
    const created = await Promise.all(
      Array.from({ length: 500 }, (_, i) => client.responses.create({ model: 'sim-small', input: `echo: job ${i}`, background: true })),
    );
    expect(created.every((r) => r.status === 'queued')).toBe(true);
    const results = await Promise.all(created.map((r) => settled(r.id, 120_000)));
    expect(results.filter((r) => r.status !== 'completed').map((r) => `${r.id} ${r.status}`)).toEqual([]);
    results.forEach((r, i) => expect(r.output_text).toBe(`job ${i}`));
    for (const s of [sim, sim2]) expect((await simStats(s.url)).peakInFlight).toBeLessThanOrEqual(16);
    // The worker's own /metrics: its queue by state, its Postgres pool, Redis health.
    const metrics = await (await fetch(`${worker.url}/metrics`)).text();
    expect(metrics).toMatch(/switchyard_worker_jobs\{region="r",state="waiting"\} 0/);
    expect(metrics).toMatch(/switchyard_build_info\{[^}]*role="worker"/);
    expect(metrics).toMatch(/switchyard_postgres_pool_connections\{state="max"\} \d+/);
    expect(metrics).toContain('switchyard_redis_up 1');
  }, 180_000);

  it('store: false keeps nothing; unsupported fields are refused naming the field; unknown ids are 404', async () => {
    const r = await client.responses.create({ model: 'sim-small', input: 'echo: ephemeral', store: false });
    expect(r.output_text).toBe('ephemeral');
    await expect(client.responses.retrieve(r.id)).rejects.toMatchObject({ status: 404 });
    const err = await client.responses
      .create({ model: 'sim-small', input: 'x', tools: [{ type: 'function', name: 'f', parameters: {}, strict: false }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect(err).toMatchObject({ status: 400, param: 'tools' });
    await expect(client.responses.create({ model: 'sim-small', input: 'x', previous_response_id: 'resp_nope' })).rejects.toMatchObject({ status: 404 });
    await expect(client.responses.create({ model: 'sim-small', input: 'x', background: true, stream: true, store: false })).rejects.toMatchObject({ status: 400, param: 'store' });
  });

  it('inputItems.list: the request input, paged by the SDK through the after cursor', async () => {
    const r = await client.responses.create({
      model: 'sim-small',
      instructions: 'not an input item',
      input: [
        { role: 'user', content: 'echo: a' },
        { role: 'assistant', content: 'a' },
        { role: 'user', content: [{ type: 'input_text', text: 'echo: b' }] },
      ],
    });
    const texts: string[] = [];
    for await (const item of client.responses.inputItems.list(r.id, { order: 'asc', limit: 1 })) {
      if (item.type === 'message') for (const part of item.content) if ('text' in part) texts.push(`${item.role}:${part.text}`);
    }
    expect(texts).toEqual(['user:echo: a', 'assistant:a', 'user:echo: b']);
    const newest = await client.responses.inputItems.list(r.id);
    expect(newest.data.map((i) => (i.type === 'message' ? i.role : i.type))).toEqual(['user', 'assistant', 'user']);
    expect(newest.has_more).toBe(false);
    await expect(client.responses.inputItems.list('resp_nope')).rejects.toMatchObject({ status: 404 });
  });

  it('delete removes a response', async () => {
    const r = await client.responses.create({ model: 'sim-small', input: 'echo: bye' });
    await client.responses.delete(r.id);
    await expect(client.responses.retrieve(r.id)).rejects.toMatchObject({ status: 404 });
  });

  it('without Redis, background mode answers with a clear error that says it needs Redis', async () => {
    const alone = await track(startGatewayProcess(yaml, [], { DATABASE_URL: PG_URL, SWITCHYARD_DATABASE_SCHEMA: `${schema}_alone` }));
    try {
      const c = new OpenAI({ baseURL: `${alone.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const err = (await c.responses.create({ model: 'sim-small', input: 'x', background: true }).catch((e: unknown) => e)) as APIError;
      expect(err.status).toBe(400);
      expect(err.message).toContain('Redis');
      // Foreground responses work without Redis (kept in the gateway's memory).
      const r = await c.responses.create({ model: 'sim-small', input: 'echo: no redis' });
      expect((await c.responses.retrieve(r.id)).output_text).toBe('no redis');
    } finally {
      await alone.stop();
      await dropSchema(`${schema}_alone`);
    }
  });
});
