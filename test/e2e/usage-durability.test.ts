import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, regionsYaml, startCli, startGatewayProcess, startSimProcess, type RunningProcess } from '../helpers/processes.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { dropSchema, query, uniqueName } from '../helpers/services.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

/**
 * No usage record lost, none written twice, under load, while Redis restarts empty (no
 * persistence), Postgres is unreachable for a while, and the worker draining the fallback is
 * SIGKILLed — each in turn, against real processes.
 */
const schema = uniqueName('sy_usage');
const ADMIN = 'usage-admin';
const postgres = new TcpProxy('127.0.0.1', 5432);
const started: RunningProcess[] = [];
let redis: RedisServer | undefined;

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await redis?.stop();
  await postgres.stop();
  await dropSchema(schema);
});

describe('usage records', () => {
  it('are all written exactly once through a Redis restart, a Postgres outage and a killed worker', async () => {
    redis = await startRedisServer();
    await postgres.start();
    const env: NodeJS.ProcessEnv = {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${postgres.port}/test`,
      SWITCHYARD_DATABASE_SCHEMA: schema,
      REDIS_URL: redis.url,
      SWITCHYARD_REDIS_PREFIX: `${schema}:`,
      SWITCHYARD_AUTH: 'keys',
      SWITCHYARD_ADMIN_TOKEN: ADMIN,
      SWITCHYARD_USAGE_FLUSH_INTERVAL_MS: '100',
    };
    const sim = await startSimProcess(['--tokens-per-second', '50000', '--ttft-ms', '1']);
    started.push(sim);
    const gw = await startGatewayProcess(regionsYaml([{ id: 'r', nodes: [{ id: 'n', url: sim.url }] }]), [], env);
    started.push(gw);
    const startWorker = async () => {
      const w = await startCli(['worker', '--port', '0'], 'worker running', env);
      started.push(w);
      return w;
    };
    let worker = await startWorker();
    const created = await fetch(`${gw.url}/admin/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant: 't', name: 'k', limits: { requestsPerMinute: 0, tokensPerMinute: 0, maxConcurrent: 0 } }),
    });
    const { key } = (await created.json()) as { key: string };
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });

    const answered: string[] = [];
    let running = true;
    const load = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (running) {
          const id = uniqueName('u');
          // Every answer, success or error, is a request the gateway accounted for.
          await client.chat.completions
            .create({ model: 'sim-small', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 }, { headers: { 'x-request-id': id } })
            .then(
              () => answered.push(id),
              (err: unknown) => {
                if (err instanceof OpenAI.APIError && err.status !== undefined) answered.push(id);
              },
            );
        }
      }),
    );
    const passed = async (n: number) => eventually(async () => answered.length >= n, 20_000, `${n} answers`);
    await passed(50);
    // 1. Redis restarts with nothing in it.
    await redis.kill();
    redis = await startRedisServer({ port: redis.port });
    await passed(answered.length + 50);
    // 2. Postgres unreachable for two seconds: records go to the Redis fallback meanwhile.
    await postgres.cut();
    await new Promise((r) => setTimeout(r, 2000));
    await postgres.restore();
    await passed(answered.length + 50);
    // 3. The worker draining the fallback is killed, and another takes over.
    worker.proc.kill('SIGKILL');
    worker = await startWorker();
    await passed(answered.length + 50);
    running = false;
    await load;

    const count = async () =>
      (await query<{ total: string; distinct: string }>(
        `SELECT count(*) AS total, count(DISTINCT request_id) AS distinct FROM "${schema}".usage_records WHERE request_id = ANY($1)`,
        [answered],
      ))[0];
    await eventually(async () => Number((await count())?.distinct) === answered.length, 20_000, 'every usage record').catch(async (e: unknown) => {
      console.log('answered', answered.length, 'count', await count(), gw.output.filter((l) => /"level":(40|50)/.test(l)).slice(0, 10).join('\n'));
      throw e;
    });
    const final = await count();
    expect(Number(final?.distinct)).toBe(answered.length);
    expect(Number(final?.total)).toBe(answered.length);
    expect(answered.length).toBeGreaterThanOrEqual(200);
  }, 90_000);
});
