import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, regionsYaml, startCli, startGatewayProcess, startSimProcess, type RunningProcess } from '../helpers/processes.js';
import { dropSchema, PG_URL, query, uniqueName } from '../helpers/services.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

/** Redis taken away (through a TCP proxy) and given back: limits fail open or closed, as configured. */
const schema = uniqueName('sy_redis');
const ADMIN = uniqueName('admin');
const redisProxy = new TcpProxy('127.0.0.1', 6379);
const started: RunningProcess[] = [];
let open: RunningProcess;
let closed: RunningProcess;
let worker: RunningProcess;

async function track(p: Promise<RunningProcess>): Promise<RunningProcess> {
  const proc = await p;
  started.push(proc);
  return proc;
}

beforeAll(async () => {
  await redisProxy.start();
  const sim = await track(startSimProcess(['--tokens-per-second', '50000', '--ttft-ms', '1']));
  const env = (mode: string): NodeJS.ProcessEnv => ({
    DATABASE_URL: PG_URL,
    SWITCHYARD_DATABASE_SCHEMA: schema,
    REDIS_URL: `redis://127.0.0.1:${redisProxy.port}`,
    SWITCHYARD_REDIS_PREFIX: `${schema}:`,
    SWITCHYARD_ADMIN_TOKEN: ADMIN,
    SWITCHYARD_AUTH: 'keys',
    SWITCHYARD_RATE_LIMIT_FAILURE: mode,
    SWITCHYARD_USAGE_FLUSH_INTERVAL_MS: '100',
  });
  const yaml = regionsYaml([{ id: 'r', nodes: [{ id: 'n1', url: sim.url }] }]);
  open = await track(startGatewayProcess(yaml, [], env('open')));
  closed = await track(startGatewayProcess(yaml, [], env('closed')));
  worker = await track(startCli(['worker', '--port', '0'], 'worker running', env('open')));
});

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await redisProxy.stop();
  await dropSchema(schema);
});

/** `module/role` of each JSON log line of `proc` with this message. */
function redisEvents(proc: RunningProcess, msg: string): string[] {
  return proc.output
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { msg?: string; module?: string; role?: string })
    .filter((e) => e.msg === msg)
    .map((e) => `${e.module ?? '?'}/${e.role ?? '?'}`);
}

async function limiterErrors(gw: RunningProcess): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  return Number(/switchyard_rate_limiter_errors_total (\d+)/.exec(text)?.[1] ?? 0);
}

describe('Redis unreachable', () => {
  it('fail-open admits and fail-closed answers 503, both counted; limits and usage resume when it returns', async () => {
    const res = await fetch(`${open.url}/admin/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant: 'r', name: 'k', limits: { requestsPerMinute: 2, tokensPerMinute: 0, maxConcurrent: 0 } }),
    });
    const { key } = (await res.json()) as { key: string };
    const ids: string[] = [];
    const ask = (gw: RunningProcess) => {
      const id = uniqueName('req');
      ids.push(id);
      return new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 }).chat.completions.create(
        { model: 'sim-small', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 },
        { headers: { 'x-request-id': id } },
      );
    };
    await ask(open);
    await ask(closed);
    await expect(ask(open)).rejects.toBeInstanceOf(OpenAI.RateLimitError); // both gateways share the bucket

    await redisProxy.cut();
    for (let i = 0; i < 3; i++) expect((await ask(open)).choices[0]?.finish_reason).toBeDefined();
    const err = await ask(closed).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    expect(await limiterErrors(open)).toBeGreaterThanOrEqual(3);
    expect(await limiterErrors(closed)).toBeGreaterThanOrEqual(1);

    // Every process logs the outage of its state connection; the worker that of its BullMQ workers' too.
    const noticed = (proc: RunningProcess, role: string) => redisEvents(proc, 'redis unreachable').includes(role);
    await eventually(
      async () => [open, closed, worker].every((p) => noticed(p, 'services/state')) && noticed(worker, 'worker/bullmq-worker'),
      10_000,
      'the outage to be logged',
    );
    await redisProxy.restore();
    // Redis kept the bucket: once the gateway has reconnected, the key is limited again.
    await eventually(async () => (await ask(open).catch((e: unknown) => e)) instanceof OpenAI.RateLimitError, 10_000, 'limits to resume');
    // Records made while Redis was away were kept by the gateways and reach Postgres.
    await eventually(
      async () => {
        const rows = await query<{ n: string }>(`SELECT count(DISTINCT request_id) AS n FROM "${schema}".usage_records WHERE request_id = ANY($1)`, [ids]);
        return Number(rows[0]?.n) === ids.length;
      },
      15_000,
      'every usage record, those made during the outage included',
    );

    // Every connection has an error listener: no ioredis stack traces on stderr. Each connection
    // role's outage is logged once, and so is its end (some roles reconnect later than others).
    for (const proc of [open, closed, worker]) {
      expect(proc.output.join('\n')).not.toContain('Unhandled error event');
      const down = redisEvents(proc, 'redis unreachable');
      expect(down).toEqual([...new Set(down)]);
      const sorted = (roles: string[]) => JSON.stringify([...roles].sort());
      await eventually(async () => sorted(redisEvents(proc, 'redis reachable again')) === sorted(down), 15_000, `the end of the outage of ${down.join(', ')}`);
    }
  });

  it('a worker and a gateway told to stop while Redis is unreachable still exit 0 (BullMQ closed by force)', async () => {
    const env: NodeJS.ProcessEnv = { DATABASE_URL: PG_URL, SWITCHYARD_DATABASE_SCHEMA: schema, REDIS_URL: `redis://127.0.0.1:${redisProxy.port}`, SWITCHYARD_REDIS_PREFIX: `${schema}:stop:` };
    const lateWorker = await track(startCli(['worker', '--port', '0'], 'worker running', env));
    const sim = await track(startSimProcess([]));
    const gw = await track(startGatewayProcess(regionsYaml([{ id: 'r', nodes: [{ id: 'n1', url: sim.url }] }]), [], env));
    await redisProxy.cut();
    try {
      await eventually(async () => redisEvents(lateWorker, 'redis unreachable').includes('worker/bullmq-worker'), 10_000, 'the worker to notice the outage');
      // Before: the worker's graceful BullMQ close and a subscriber's QUIT waited for Redis forever.
      expect(await lateWorker.stop()).toBe(0);
      expect(lateWorker.output.some((l) => l.includes('background workers closed by force'))).toBe(true);
      expect(await gw.stop()).toBe(0);
    } finally {
      await redisProxy.restore();
    }
  });
});
