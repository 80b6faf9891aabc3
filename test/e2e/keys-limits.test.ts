import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, regionsYaml, startCli, startGatewayProcess, startSimProcess, type RunningProcess } from '../helpers/processes.js';
import { dropSchema, PG_URL, query, REDIS_URL, samplePgConnections, uniqueName } from '../helpers/services.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

/**
 * Keys, limits and usage across real processes: two gateways and a worker sharing the machine's
 * Redis and Postgres (own schema and key prefix), a sim, the official SDK as the client.
 * Every process reaches Postgres through a TCP proxy, so the test can take Postgres away.
 */
const schema = uniqueName('sy_keys');
const prefix = `${uniqueName('sytest')}:`;
const ADMIN = uniqueName('admin-token');
const started: RunningProcess[] = [];
const pgProxy = new TcpProxy('127.0.0.1', 5432);
let gwA: RunningProcess;
let gwB: RunningProcess;
let sim: RunningProcess;
let slowSim: RunningProcess;

async function track(p: Promise<RunningProcess>): Promise<RunningProcess> {
  const proc = await p;
  started.push(proc);
  return proc;
}

function env(appName: string): NodeJS.ProcessEnv {
  const url = new URL(PG_URL);
  url.port = String(pgProxy.port);
  url.searchParams.set('application_name', appName);
  return {
    DATABASE_URL: url.toString(),
    SWITCHYARD_DATABASE_SCHEMA: schema,
    REDIS_URL,
    SWITCHYARD_REDIS_PREFIX: prefix,
    SWITCHYARD_ADMIN_TOKEN: ADMIN,
    SWITCHYARD_AUTH: 'keys',
    SWITCHYARD_USAGE_FLUSH_INTERVAL_MS: '100',
    SWITCHYARD_PG_POOL_SIZE: '3',
  };
}

async function admin<T>(gw: RunningProcess, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${gw.url}/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

interface CreatedKey {
  id: string;
  key: string;
}

function createKey(limits: { requestsPerMinute: number; tokensPerMinute: number; maxConcurrent: number }, tenant = 'acme'): Promise<CreatedKey> {
  return admin<CreatedKey>(gwA, 'POST', '/keys', { tenant, name: uniqueName('k'), limits, models: ['*'], priority: 'standard' });
}

const sdk = (gw: RunningProcess, key: string): OpenAI => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
const messages = [{ role: 'user' as const, content: 'count my tokens' }];

beforeAll(async () => {
  await pgProxy.start();
  sim = await track(startSimProcess(['--tokens-per-second', '50000', '--ttft-ms', '1', '--max-seqs', '256']));
  // A slow node: its streams stay open long enough to hold concurrency leases.
  slowSim = await track(startSimProcess(['--tokens-per-second', '20', '--ttft-ms', '1', '--models', 'slow-model']));
  const yaml = regionsYaml([
    { id: 'r', nodes: [{ id: 'n1', url: sim.url, maxSequences: 256 }, { id: 'slow', url: slowSim.url, models: ['slow-model'] }] },
  ]);
  // Start one first so that it applies the migrations alone; the others find them applied.
  gwA = await track(startGatewayProcess(yaml, [], env(`${schema}_gwA`)));
  [gwB] = await Promise.all([
    track(startGatewayProcess(yaml, [], env(`${schema}_gwB`))),
    track(startCli(['worker', '--port', '0'], 'worker running', env(`${schema}_worker`))),
  ]);
});

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await pgProxy.stop();
  await dropSchema(schema);
});

describe('API keys', () => {
  it('a request without a key, or with a wrong one, is refused with AuthenticationError', async () => {
    await expect(sdk(gwA, 'sk-sy-wrong').chat.completions.create({ model: 'sim-small', messages })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const res = await fetch(`${gwA.url}/v1/models`);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_api_key' } });
  });

  it('the secret is returned once and stored hashed', async () => {
    const key = await createKey({ requestsPerMinute: 100, tokensPerMinute: 100_000, maxConcurrent: 10 });
    expect(key.key).toMatch(/^sk-sy-/);
    const listed = await admin<{ data: Array<Record<string, unknown>> }>(gwB, 'GET', '/keys?tenant=acme');
    const row = listed.data.find((k) => k['id'] === key.id);
    expect(row).toBeDefined();
    expect(JSON.stringify(row)).not.toContain(key.key);
    const stored = await query<{ key_hash: string }>(`SELECT key_hash FROM "${schema}".api_keys WHERE id = $1`, [key.id]);
    expect(stored[0]?.key_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored[0]?.key_hash).not.toContain(key.key);
  });
});

describe('rate limits across two gateways sharing Redis', () => {
  it('exactly N of M concurrent requests are admitted; the rest get RateLimitError', async () => {
    const key = await createKey({ requestsPerMinute: 10, tokensPerMinute: 1_000_000, maxConcurrent: 100 });
    const clients = [sdk(gwA, key.key), sdk(gwB, key.key)];
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) => (clients[i % 2] as OpenAI).chat.completions.create({ model: 'sim-small', messages, max_tokens: 4 })),
    );
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const limited = results.filter((r) => r.status === 'rejected' && r.reason instanceof OpenAI.RateLimitError);
    expect(ok).toBe(10);
    expect(limited).toHaveLength(20);
    const err = (limited[0] as PromiseRejectedResult).reason as InstanceType<typeof OpenAI.RateLimitError>;
    expect(Number(err.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(err.headers?.get('x-ratelimit-remaining-requests')).toBe('0');
  });

  it('headers report the buckets; token reservations reconcile to the real usage', async () => {
    const limit = 60_000; // refills 1 token per ms: tolerances below allow for the time the test takes
    const key = await createKey({ requestsPerMinute: 100, tokensPerMinute: limit, maxConcurrent: 10 });
    const client = sdk(gwA, key.key);
    let used = 0;
    let last: Response | undefined;
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) {
      const { data, response } = await client.chat.completions.create({ model: 'sim-small', messages, max_tokens: 50 }).withResponse();
      last = response;
      if (i < 2) used += (data.usage?.prompt_tokens ?? 0) + (data.usage?.completion_tokens ?? 0);
    }
    const h = (name: string): number => Number(last?.headers.get(name));
    expect(h('x-ratelimit-limit-requests')).toBe(100);
    expect(h('x-ratelimit-remaining-requests')).toBe(97);
    expect(last?.headers.get('x-ratelimit-reset-requests')).toMatch(/^\d+(\.\d+)?(ms|s)$/);
    expect(h('x-ratelimit-limit-tokens')).toBe(limit);
    // Third admission: limit - real usage of the first two (reconciled) - the third's reservation.
    const reserved3 = 50 + Math.ceil(JSON.stringify({ model: 'sim-small', messages, max_tokens: 50 }).length / 4);
    const expected = limit - used - reserved3;
    const elapsed = Date.now() - t0;
    expect(h('x-ratelimit-remaining-tokens')).toBeGreaterThanOrEqual(expected - 5);
    expect(h('x-ratelimit-remaining-tokens')).toBeLessThanOrEqual(expected + elapsed + 5);
    // Without reconciliation two whole reservations (each > 50 tokens of unused output room) would be gone.
    expect(used).toBeLessThan(2 * reserved3);
  });

  it('a key over its concurrency limit gets 429 while its requests are open', async () => {
    const key = await createKey({ requestsPerMinute: 1000, tokensPerMinute: 10_000_000, maxConcurrent: 2 });
    const client = sdk(gwB, key.key);
    const streams = await Promise.all([0, 1].map(() => client.chat.completions.create({ model: 'slow-model', messages, max_tokens: 1000, stream: true })));
    const err = await client.chat.completions.create({ model: 'sim-small', messages, max_tokens: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    for (const s of streams) s.controller.abort();
  });

  it('a key revoked through one gateway is refused by the other within 3 s', async () => {
    const key = await createKey({ requestsPerMinute: 1000, tokensPerMinute: 1_000_000, maxConcurrent: 10 });
    await sdk(gwB, key.key).chat.completions.create({ model: 'sim-small', messages, max_tokens: 1 }); // now cached in B
    await admin(gwA, 'DELETE', `/keys/${key.id}`);
    const t0 = Date.now();
    await eventually(
      async () => {
        const r = await sdk(gwB, key.key).chat.completions.create({ model: 'sim-small', messages, max_tokens: 1 }).catch((e: unknown) => e);
        return r instanceof OpenAI.AuthenticationError;
      },
      5000,
      'gateway B to refuse the revoked key',
    );
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});

describe('usage records', () => {
  it('Postgres taken away mid-load and given back: no request fails, every record is written once', async () => {
    const key = await createKey({ requestsPerMinute: 100_000, tokensPerMinute: 100_000_000, maxConcurrent: 1000 }, 'outage');
    const client = sdk(gwA, key.key);
    await client.chat.completions.create({ model: 'sim-small', messages, max_tokens: 1 }); // key cached before the outage
    const ids: string[] = [];
    const send = async (i: number): Promise<void> => {
      const id = `outage-${schema}-${i}`;
      ids.push(id);
      await client.chat.completions.create({ model: 'sim-small', messages, max_tokens: 3 }, { headers: { 'x-request-id': id } });
    };
    let i = 0;
    const wave = async (n: number): Promise<void> => {
      await Promise.all(Array.from({ length: n }, () => send(i++)));
    };
    await wave(50);
    await pgProxy.cut();
    await wave(100); // Postgres unreachable: requests must not notice
    await new Promise((r) => setTimeout(r, 500)); // let the worker fail a few flushes while it is down
    await pgProxy.restore();
    await wave(50);
    await eventually(
      async () => {
        const rows = await query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".usage_records WHERE request_id = ANY($1)`, [ids]);
        return Number(rows[0]?.n) === ids.length;
      },
      15_000,
      'every usage record in Postgres',
    );
    const dup = await query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".usage_records WHERE request_id = ANY($1)`, [ids]);
    expect(Number(dup[0]?.n)).toBe(200);
    const one = await query<Record<string, unknown>>(`SELECT * FROM "${schema}".usage_records WHERE request_id = $1`, [ids[0]]);
    expect(one[0]).toMatchObject({ tenant_id: 'outage', key_id: key.id, model: 'sim-small', region: 'r', node_id: 'n1', completion_tokens: 3, status: 200 });
  });

  it('GET /admin/v1/usage aggregates by tenant, key and model', async () => {
    const byTenant = await admin<{ data: Array<{ group: string; requests: number; completion_tokens: number }> }>(gwB, 'GET', '/usage?groupBy=tenant');
    const outage = byTenant.data.find((r) => r.group === 'outage');
    expect(outage?.requests).toBe(201);
    expect(outage?.completion_tokens).toBe(1 + 200 * 3);
    const byModel = await admin<{ data: Array<{ group: string }> }>(gwB, 'GET', '/usage?groupBy=model');
    expect(byModel.data.map((r) => r.group)).toContain('sim-small');
  });

  it('1,000 concurrent requests over 50 new keys never open more Postgres connections than the pool', async () => {
    const keys = await Promise.all(Array.from({ length: 50 }, () => createKey({ requestsPerMinute: 100_000, tokensPerMinute: 100_000_000, maxConcurrent: 1000 }, 'flood')));
    const sampler = samplePgConnections(`${schema}_gwB`);
    const results = await Promise.allSettled(
      Array.from({ length: 1000 }, (_, i) => sdk(gwB, (keys[i % 50] as CreatedKey).key).chat.completions.create({ model: 'sim-small', messages, max_tokens: 2 })),
    );
    const peak = await sampler.stop();
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(3);
  });
});
