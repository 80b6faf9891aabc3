import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, refusedPort, simStats, startCli, startGatewayProcess, startSimProcess, type RunningProcess } from '../helpers/processes.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { dropSchema, PG_URL, query, uniqueName } from '../helpers/services.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

/**
 * Two regions that stand alone, on one machine: each has its own redis-server, gateway, worker
 * and node; they share one Postgres (the global system of record). Each region reaches the
 * other's gateway only through a TCP proxy that adds the 40 ms round trip of regions.yaml.
 */
const RTT_MS = 40;
const schema = uniqueName('sy_regions');
const ADMIN = 'regions-admin';
const TOKEN = 'regions-shared-secret';
const started: RunningProcess[] = [];
const redis: Record<'west' | 'north', RedisServer | undefined> = { west: undefined, north: undefined };
const toWest = { proxy: undefined as TcpProxy | undefined, port: 0 };
const toNorth = { proxy: undefined as TcpProxy | undefined, port: 0 };
let west: RunningProcess;
let north: RunningProcess;

let westSim: RunningProcess;
let apiKey = '';
let keyId = '';

async function track(p: Promise<RunningProcess>): Promise<RunningProcess> {
  const proc = await p;
  started.push(proc);
  return proc;
}

const metric = async (gw: RunningProcess, re: RegExp): Promise<number> => Number(re.exec(await (await fetch(`${gw.url}/metrics`)).text())?.[1] ?? NaN);

beforeAll(async () => {
  [redis.west, redis.north] = await Promise.all([startRedisServer(), startRedisServer()]);
  // West's node takes one sequence at a time and is declared as fast per sequence as any: local
  // requests stay local (no round trip to pay). It really runs slowly, so one long stream holds it.
  // North's node is declared as fast per sequence too (4 × 2000 tokens/s): each region then serves
  // its own requests, and spills only when it is full (the spill decision weighs speed against RTT).
  const [simWest, simNorth] = await Promise.all([
    track(startSimProcess(['--max-seqs', '1', '--tokens-per-second', '100', '--ttft-ms', '1'])),
    track(startSimProcess(['--max-seqs', '4', '--tokens-per-second', '2000', '--ttft-ms', '1'])),
  ]);

  westSim = simWest;
  const [westPort, northPort] = [await refusedPort(), await refusedPort()];
  toWest.proxy = new TcpProxy('127.0.0.1', westPort, RTT_MS / 2);
  toNorth.proxy = new TcpProxy('127.0.0.1', northPort, RTT_MS / 2);
  toWest.port = await toWest.proxy.start();
  toNorth.port = await toNorth.proxy.start();
  const yaml = `regions:
  - id: west
    residency: eu
    gateway: http://127.0.0.1:${toWest.port}
    clusters:
      - id: west-a
        nodes:
          - { id: w1, url: '${simWest.url}', engine: vllm, models: [sim-small], capacity: { tokensPerSecond: 2000, maxSequences: 1 } }
  - id: north
    residency: eu
    gateway: http://127.0.0.1:${toNorth.port}
    clusters:
      - id: north-a
        nodes:
          - { id: n1, url: '${simNorth.url}', engine: vllm, models: [sim-small], capacity: { tokensPerSecond: 8000, maxSequences: 4 } }
distances:
  - { between: [west, north], rttMs: ${RTT_MS} }
`;
  const env = (region: 'west' | 'north'): NodeJS.ProcessEnv => ({
    DATABASE_URL: PG_URL,
    SWITCHYARD_DATABASE_SCHEMA: schema,
    REDIS_URL: redis[region]?.url,
    SWITCHYARD_REGION: region,
    SWITCHYARD_REGION_TOKEN: TOKEN,
    SWITCHYARD_REGION_SUMMARY_MS: '200',
    SWITCHYARD_ADMIN_TOKEN: ADMIN,
    SWITCHYARD_AUTH: 'keys',
    SWITCHYARD_USAGE_FLUSH_INTERVAL_MS: '100',
  });
  west = await track(startGatewayProcess(yaml, ['--port', String(westPort)], env('west')));
  north = await track(startGatewayProcess(yaml, ['--port', String(northPort)], env('north')));
  const config = west.proc.spawnargs[west.proc.spawnargs.indexOf('--config') + 1] as string;
  await Promise.all([
    track(startCli(['worker', '--config', config, '--port', '0'], 'worker running', env('west'))),
    track(startCli(['worker', '--config', config, '--port', '0'], 'worker running', env('north'))),
  ]);
  const res = await fetch(`${west.url}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant: 'acme', name: 'regions', limits: { requestsPerMinute: 0, tokensPerMinute: 0, maxConcurrent: 0 } }),
  });
  ({ key: apiKey, id: keyId } = (await res.json()) as { key: string; id: string });
  // Each gateway sees the other region's summary before the tests start.
  for (const gw of [west, north]) await eventually(async () => (await metric(gw, /switchyard_region_peer_up\{region="\w+"\} (\d)/)) === 1, 10_000, 'summaries');
}, 120_000);

afterAll(async () => {
  if (process.env['DUMP_REGION_LOGS']) for (const p of [west, north]) console.log(p.output.filter((l) => /"level":(40|50)/.test(l)).slice(0, 60).join('\n'));
  await Promise.all(started.map((p) => p.stop()));
  await Promise.all([toWest.proxy?.stop(), toNorth.proxy?.stop()]);
  await Promise.all([redis.west?.stop(), redis.north?.stop()]);
  await dropSchema(schema);
});

const client = (gw: RunningProcess, key = apiKey) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
async function newKey(limits: { requestsPerMinute: number; tokensPerMinute: number; maxConcurrent: number }): Promise<string> {
  const res = await fetch(`${west.url}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant: 'acme', name: uniqueName('k'), limits }),
  });
  return ((await res.json()) as { key: string }).key;
}

const ask = (gw: RunningProcess, id: string, maxTokens = 2, key = apiKey) =>
  client(gw, key).chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens }, { headers: { 'x-request-id': id } }).withResponse();

describe('regions that stand alone', () => {
  it('serves local requests locally: no connection across regions on the request path', async () => {
    const before = toNorth.proxy?.connections ?? 0;
    for (let i = 0; i < 10; i++) {
      const { response } = await ask(west, uniqueName('local'));
      expect(response.headers.get('x-switchyard-region')).toBe('west');
    }
    // The summaries' keep-alive connection is reused: local requests open none.
    expect(toNorth.proxy?.connections).toBe(before);
  });

  it('with the home region full, the neighbour serves the request (the response says so), charged and recorded once', async () => {
    // Hold west's only sequence with a long stream.
    const hold = await client(west).chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: `echo: ${'w '.repeat(300)}` }], max_tokens: 400, stream: true });
    const iterator = hold[Symbol.asyncIterator]();
    await iterator.next();
    try {
      const id = uniqueName('spill');
      const { data, response } = await ask(west, id, 5);
      expect(response.headers.get('x-switchyard-region')).toBe('north');
      expect(response.headers.get('x-switchyard-node')).toBe('n1');
      expect(data.usage?.completion_tokens).toBe(5);
      // Streams spill too, chunk for chunk, usage included when asked.
      const stream = await client(west).chat.completions.create(
        { model: 'sim-small', messages: [{ role: 'user', content: 'echo: one two three' }], max_tokens: 10, stream: true, stream_options: { include_usage: true } },
        { headers: { 'x-request-id': `${id}-stream` } },
      );
      let text = '';
      let usage: number | undefined;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? '';
        usage = chunk.usage?.completion_tokens ?? usage;
      }
      expect(text).toBe('one two three');
      expect(usage).toBe(3);
      // Recorded once, by the origin, with the node that served it.
      await eventually(async () => (await query(`SELECT 1 FROM "${schema}".usage_records WHERE request_id = $1`, [id])).length > 0, 10_000, 'the usage record');
      const rows = await query<{ region: string; node_id: string; key_id: string }>(`SELECT region, node_id, key_id FROM "${schema}".usage_records WHERE request_id = $1`, [id]);
      expect(rows).toEqual([{ region: 'west', node_id: 'n1', key_id: keyId }]);
      // Charged once: the key's limiter state lives in the origin's Redis only.
      const northRedis = new Redis(redis.north?.url as string);
      expect((await northRedis.keys(`*${keyId}*`)).length).toBe(0);
      await northRedis.quit();
      expect(await metric(west, /switchyard_region_forwarded_total\{region="north",outcome="served"\} (\d+)/)).toBeGreaterThanOrEqual(2);
      // The Responses API spills too: north runs and keeps the response (its id names north).
      const { data: r, response: rr } = await client(west).responses.create({ model: 'sim-small', input: 'echo: spilled response' }).withResponse();
      expect(rr.headers.get('x-switchyard-region')).toBe('north');
      expect(r.id.endsWith('north')).toBe(true);
      expect(r.output_text).toBe('spilled response');
      expect((await client(west).responses.retrieve(r.id)).output_text).toBe('spilled response');
      const live = await client(west).responses.create({ model: 'sim-small', input: 'echo: streamed there', stream: true });
      let streamed = '';
      for await (const event of live) if (event.type === 'response.output_text.delta') streamed += event.delta;
      expect(streamed).toBe('streamed there');
    } finally {
      await iterator.return?.();
      // The next tests need west's node free again: the aborted stream leaves it.
      await eventually(async () => (await simStats(westSim.url)).running === 0, 10_000, "west's node to be free");
    }
  });

  it('a client cannot pose as a forwarded request: internal headers without the region token are dropped', async () => {
    const res = await fetch(`${north.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer not-a-key', 'x-switchyard-forwarded-from': 'west', 'x-switchyard-tenant': 'acme' },
      body: JSON.stringify({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
    });
    expect(res.status).toBe(401);
    const summary = await fetch(`${north.url}/internal/v1/summary`, { headers: { authorization: 'Bearer wrong' } });
    expect(summary.status).toBe(401);
    const ok = await fetch(`${north.url}/internal/v1/summary`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(((await ok.json()) as { region: string; models: Record<string, unknown> }).models).toHaveProperty('sim-small');
  });

  it('a conversation started in one region continues in another; either gateway retrieves any response', async () => {
    const t1 = await client(west).responses.create({ model: 'sim-small', input: 'echo: alpha' });
    expect(t1.id.endsWith('west')).toBe(true);
    // North rebuilds the history from west's hot response (one round trip to west's gateway).
    const t2 = await client(north).responses.create({ model: 'sim-small', input: 'echo: beta', previous_response_id: t1.id });
    expect(t2.id.endsWith('north')).toBe(true);
    expect(t2.output_text).toContain('alpha');
    expect(t2.output_text).toContain('beta');
    const t3 = await client(west).responses.create({ model: 'sim-small', input: 'echo: gamma', previous_response_id: t2.id });
    for (const word of ['alpha', 'beta', 'gamma']) expect(t3.output_text).toContain(word);
    // Retrieve, input items and delete through the other region's gateway.
    expect((await client(north).responses.retrieve(t1.id)).output_text).toBe('alpha');
    expect((await client(west).responses.retrieve(t2.id)).output_text).toContain('beta');
    const items = await client(west).responses.inputItems.list(t2.id);
    expect(items.data.length).toBeGreaterThan(0);
    // Another tenant's key finds nothing, wherever it asks.
    const other = (await (await fetch(`${west.url}/admin/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant: 'other', name: 'x', limits: { requestsPerMinute: 0, tokensPerMinute: 0, maxConcurrent: 0 } }),
    })).json()) as { key: string };
    await expect(client(north, other.key).responses.retrieve(t1.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await client(north).responses.delete(t1.id);
    await expect(client(west).responses.retrieve(t1.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('a burst from one key to every region at once admits at most the limit plus one request per region', async () => {
    const limit = 20;
    const key = await newKey({ requestsPerMinute: limit, tokensPerMinute: 0, maxConcurrent: 0 });
    const burst = (gw: RunningProcess) =>
      Promise.all(Array.from({ length: limit }, () => ask(gw, uniqueName('burst'), 1, key).then(() => 1, (err: unknown) => {
        expect(err).toBeInstanceOf(OpenAI.RateLimitError);
        return 0;
      })));
    const [atWest, atNorth] = await Promise.all([burst(west), burst(north)]);
    const admitted = [...atWest, ...atNorth].reduce((a, b) => a + b, 0);
    expect(admitted).toBeLessThanOrEqual(limit + 2);
    expect(admitted).toBeGreaterThanOrEqual(limit / 2);
  });

  it('a key used in one region only (not its limits home) gets at least 90% of its limit', async () => {
    const limit = 60;
    const key = await newKey({ requestsPerMinute: limit, tokensPerMinute: 0, maxConcurrent: 0 });
    let admitted = 0;
    let next = 0;
    const started = Date.now();
    // Closed loop, 4 at a time, twice the limit's worth of attempts; a refused client waits what
    // the gateway tells it (retry-after-ms), as the SDKs do.
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next++ < 2 * limit) {
        const err = await ask(north, uniqueName('steady'), 1, key).then(() => undefined, (e: unknown) => e);
        if (err === undefined) admitted++;
        else await new Promise((r) => setTimeout(r, Number((err as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after-ms') ?? 250)));
      }
    }));
    expect(admitted).toBeGreaterThanOrEqual(0.9 * limit);
    // The bucket refills at the limit's rate meanwhile; one request may run ahead of the slice.
    expect(admitted).toBeLessThanOrEqual(limit + Math.ceil(((Date.now() - started) * limit) / 60_000) + 1);
  });

  it('x-switchyard-region naming a standalone neighbour forwards there', async () => {
    const { response } = await client(west).chat.completions
      .create({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }, { headers: { 'x-switchyard-region': 'north' } })
      .withResponse();
    expect(response.headers.get('x-switchyard-region')).toBe('north');
    expect(response.headers.get('x-switchyard-node')).toBe('n1');
  });

  it('a neighbour that cannot be reached gets no spill within a few seconds; local service continues', async () => {
    await toNorth.proxy?.cut();
    try {
      await eventually(async () => (await metric(west, /switchyard_region_peer_up\{region="north"\} (\d)/)) === 0, 10_000, 'west to count north unreachable');
      for (let i = 0; i < 5; i++) expect((await ask(west, uniqueName('alone'))).response.headers.get('x-switchyard-region')).toBe('west');
      const refused = await client(west)
        .chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }, { headers: { 'x-switchyard-region': 'north' } })
        .catch((e: unknown) => e);
      expect((refused as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    } finally {
      await toNorth.proxy?.restore();
    }
    await eventually(async () => (await metric(west, /switchyard_region_peer_up\{region="north"\} (\d)/)) === 1, 10_000, 'west to see north again');
  });

  it("one region's Redis killed under load: the other region serves every request", async () => {
    const errorsBefore = await metric(north, /switchyard_http_requests_total\{route="\/v1\/chat\/completions",status_class="5xx"\} (\d+)/);
    const load = (async () => {
      const results: number[] = [];
      for (let i = 0; i < 30; i++) results.push((await ask(north, uniqueName('north'))).response.status);
      return results;
    })();
    await redis.west?.kill();
    const statuses = await load;
    expect(statuses.every((s) => s === 200)).toBe(true);
    const errorsAfter = await metric(north, /switchyard_http_requests_total\{route="\/v1\/chat\/completions",status_class="5xx"\} (\d+)/);
    expect(Number.isNaN(errorsAfter) ? 0 : errorsAfter).toBe(Number.isNaN(errorsBefore) ? 0 : errorsBefore);
  });
});
