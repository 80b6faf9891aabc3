import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, regionsYaml, startCli, startSimProcess, type RunningProcess } from '../helpers/processes.js';
import { sentinelMaster, sentinelsAcquainted, startCluster, startSentinel, type StartedTopology } from '../helpers/redis-topologies.js';
import { dropSchema, PG_URL, query, uniqueName } from '../helpers/services.js';

/**
 * The Redis master killed under load, behind Sentinel and in a Cluster: chat requests at about
 * 200/s and 100 background responses flow through a real gateway and worker. Every request is
 * answered (a success, or a 503 with Retry-After; never a 500, never past its deadline), every
 * accepted background response completes exactly once, every answered request has exactly one
 * usage record. The time until requests are admitted under limits again is printed (measured,
 * not asserted: docs/redis.md).
 */
const LIMIT = 1_000_000; // requests/min: the limiter takes part without refusing anything
const DEADLINE_MS = 5000; // the queue deadline the gateway is given
const ADMIN = 'failover-admin';
/** What each test started, stopped when it ends (the two topologies never run at once: 2 cores). */
const cleanup: Array<() => Promise<unknown>> = [];
async function stopAll(): Promise<void> {
  for (const f of cleanup.splice(0).reverse()) {
    const t0 = Date.now();
    await f().catch((e: unknown) => console.log(String(e)));
    if (process.env['DEBUG_FAILOVER'] !== undefined) console.log('cleanup step', Date.now() - t0, f.toString().slice(0, 60));
  }
}
afterEach(stopAll, 60_000);

interface Outcome {
  readonly kind: 'chat' | 'job';
  readonly sentAt: number;
  readonly doneAt: number;
  readonly status: number; // 0: no answer before the client gave up
  readonly retryAfter: string | null;
  readonly underLimits: boolean;
  readonly requestId: string;
  readonly responseId?: string;
}

/** Stops a process; one still running 20 s after SIGTERM fails the test (and is killed). */
async function stopOrShow(name: string, p: RunningProcess): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([p.stop().then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 20_000)))]);
  clearTimeout(timer);
  if (!stopped) {
    p.proc.kill('SIGKILL');
    throw new Error(`${name} did not exit within 20 s of SIGTERM:\n${p.output.slice(-15).join('\n')}`);
  }
}

async function send(url: string, key: string, kind: 'chat' | 'job'): Promise<Outcome> {
  const requestId = uniqueName('f');
  const sentAt = Date.now();
  const body =
    kind === 'chat'
      ? { path: '/v1/chat/completions', json: { model: 'sim-small', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 } }
      : { path: '/v1/responses', json: { model: 'sim-small', input: 'echo: job', max_output_tokens: 4, background: true } };
  try {
    const res = await fetch(`${url}${body.path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': requestId },
      body: JSON.stringify(body.json),
      // A request still unanswered well past its deadline counts as hung.
      signal: AbortSignal.timeout(DEADLINE_MS + 10_000),
    });
    const text = await res.text();
    const remaining = res.headers.get('x-ratelimit-remaining-requests');
    const responseId = kind === 'job' && res.status === 200 ? (JSON.parse(text) as { id: string }).id : undefined;
    return {
      kind, sentAt, doneAt: Date.now(), status: res.status, retryAfter: res.headers.get('retry-after'),
      underLimits: remaining !== null && Number(remaining) < LIMIT, requestId, ...(responseId === undefined ? {} : { responseId }),
    };
  } catch {
    return { kind, sentAt, doneAt: Date.now(), status: 0, retryAfter: null, underLimits: false, requestId };
  }
}

/** Chat at `rps` and `jobs` background responses spread over the first half, until `stop`. */
function drive(url: string, key: string, rps: number, jobs: number, jobsOverMs: number): { stop(): Promise<Outcome[]> } {
  const inflight: Promise<Outcome>[] = [];
  const started = Date.now();
  let jobsSent = 0;
  let chatsSent = 0;
  const timer = setInterval(() => {
    const elapsed = Date.now() - started;
    while (chatsSent < (elapsed * rps) / 1000) {
      chatsSent++;
      inflight.push(send(url, key, 'chat'));
    }
    while (jobsSent < jobs && jobsSent < (elapsed * jobs) / jobsOverMs) {
      jobsSent++;
      inflight.push(send(url, key, 'job'));
    }
  }, 10);
  return {
    async stop() {
      clearInterval(timer);
      return Promise.all(inflight);
    },
  };
}

async function stack(name: string, redisEnv: NodeJS.ProcessEnv): Promise<{ gw: RunningProcess; worker: RunningProcess; key: string; schema: string }> {
  const schema = uniqueName(`sy_fo_${name}`);
  cleanup.push(() => dropSchema(schema));
  const env: NodeJS.ProcessEnv = {
    ...redisEnv,
    DATABASE_URL: PG_URL,
    SWITCHYARD_DATABASE_SCHEMA: schema,
    SWITCHYARD_REDIS_PREFIX: `${schema}:`,
    SWITCHYARD_AUTH: 'keys',
    SWITCHYARD_ADMIN_TOKEN: ADMIN,
    SWITCHYARD_USAGE_FLUSH_INTERVAL_MS: '100',
    SWITCHYARD_QUEUE_DEADLINE_STANDARD_MS: String(DEADLINE_MS),
    SWITCHYARD_QUEUE_DEADLINE_BATCH_MS: '60000',
    SWITCHYARD_JOB_LOCK_MS: '5000',
  };
  const sim = await startSimProcess(['--tokens-per-second', '50000', '--ttft-ms', '1']);
  cleanup.push(() => sim.stop());
  const dir = mkdtempSync(join(tmpdir(), 'sy-failover-'));
  cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'regions.yaml');
  writeFileSync(config, regionsYaml([{ id: 'r', nodes: [{ id: 'n', url: sim.url, maxSequences: 256, tokensPerSecond: 50_000 }] }]));
  const gw = await startCli(['gateway', '--config', config, '--port', '0'], 'gateway listening', env);
  cleanup.push(() => stopOrShow('gateway', gw));
  const worker = await startCli(['worker', '--config', config, '--port', '0'], 'worker running', env);
  cleanup.push(() => stopOrShow('worker', worker));
  const created = await fetch(`${gw.url}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant: 't', name: 'k', limits: { requestsPerMinute: LIMIT, tokensPerMinute: 0, maxConcurrent: 0 } }),
  });
  const { key } = (await created.json()) as { key: string };
  return { gw, worker, key, schema };
}

/** Runs the load, kills a master `afterMs` in, and checks every promise the issue makes. */
async function failoverUnderLoad(name: string, redisEnv: NodeJS.ProcessEnv, killMaster: () => Promise<void>): Promise<void> {
  const { gw, worker, key, schema } = await stack(name, redisEnv);
  const load = drive(gw.url, key, 200, 100, 8000);
  await new Promise((r) => setTimeout(r, 3000));
  const killedAt = Date.now();
  await killMaster();
  await new Promise((r) => setTimeout(r, 13_000));
  const outcomes = await load.stop();

  const chats = outcomes.filter((o) => o.kind === 'chat');
  const statuses = new Map<number, number>();
  for (const o of outcomes) statuses.set(o.status, (statuses.get(o.status) ?? 0) + 1);
  const afterKill = chats.filter((o) => o.sentAt >= killedAt);
  const lastOutside = Math.max(killedAt, ...afterKill.filter((o) => !o.underLimits && o.status === 200).map((o) => o.doneAt));
  const firstUnder = afterKill.find((o) => o.underLimits && o.sentAt >= lastOutside);
  const slowest = Math.max(...afterKill.map((o) => o.doneAt - o.sentAt));
  const requeued = gw.output.filter((l) => l.includes('background jobs lost in a Redis failover')).length;
  const postponed = worker.output.filter((l) => l.includes('background response postponed')).length;
  console.log(
    `[${name}] ${chats.length} chats, ${outcomes.length - chats.length} jobs; statuses ${JSON.stringify(Object.fromEntries(statuses))}; ` +
      `admitted without limits for ${lastOutside - killedAt} ms after the kill; first under limits again ${firstUnder === undefined ? 'never' : `${firstUnder.doneAt - killedAt} ms`} after it; ` +
      `slowest chat sent after the kill ${slowest} ms; lost-job recoveries logged: ${requeued}; jobs postponed for Redis: ${postponed}`,
  );
  const errors = (p: RunningProcess): string[] =>
    p.output
      .filter((l) => /"level":50/.test(l))
      .slice(0, 5)
      .map((l) => {
        const e = (JSON.parse(l) as { err?: { message?: string; stack?: string; command?: { name?: string } } }).err;
        return `${e?.command?.name ?? ''} ${e?.message ?? l.slice(0, 300)} ${e?.stack?.split('\n').slice(1, 4).join(' | ') ?? ''}`;
      });
  if (statuses.has(500) || statuses.has(0)) {
    const bad = outcomes.filter((o) => o.status === 500 || o.status === 0).map((o) => `${o.kind}:${o.status}`);
    console.log(`[${name}] ${bad.length} bad answers (${[...new Set(bad)].join(', ')}); gateway errors:\n${errors(gw).join('\n')}`);
  }

  // Every request answered: a success or a 503 with Retry-After, nothing else, nothing hung.
  for (const o of outcomes) {
    expect([200, 503]).toContain(o.status);
    if (o.status === 503) expect(o.retryAfter).not.toBeNull();
  }
  expect(afterKill.length).toBeGreaterThan(1000);
  // Requests are admitted under limits again once the new master serves.
  expect(firstUnder).toBeDefined();

  // Every accepted background response completes, exactly once.
  const jobs = outcomes.filter((o) => o.responseId !== undefined).map((o) => o.responseId as string);
  expect(jobs.length).toBeGreaterThan(50);
  const status = async (id: string): Promise<string> => ((await (await fetch(`${gw.url}/v1/responses/${id}`, { headers: { authorization: `Bearer ${key}` } })).json()) as { status: string }).status;
  await eventually(async () => (await Promise.all(jobs.map(status))).every((s) => s === 'completed'), 30_000, 'every background response completed').catch(async (e: unknown) => {
    const left = (await Promise.all(jobs.map(async (id) => [id, await status(id)]))).filter(([, s]) => s !== 'completed');
    const about = (id: string): string[] => [...gw.output, ...worker.output].filter((l) => l.includes(id.slice(5, 20))).map((l) => l.slice(0, 400));
    console.log(`[${name}] not completed: ${JSON.stringify(left.slice(0, 10))}\n${errors(worker).join('\n')}\n${left.flatMap(([id]) => about(id as string)).join('\n')}`);
    throw e;
  });

  // Usage: exactly one record per answered chat request and per background response.
  const answered = chats.map((o) => o.requestId);
  const count = async (ids: string[]) =>
    (await query<{ total: string; distinct: string }>(
      `SELECT count(*) AS total, count(DISTINCT request_id) AS distinct FROM "${schema}".usage_records WHERE request_id = ANY($1)`,
      [ids],
    ))[0];
  await eventually(async () => Number((await count([...answered, ...jobs]))?.distinct) === answered.length + jobs.length, 20_000, 'every usage record');
  const final = await count([...answered, ...jobs]);
  expect(Number(final?.total)).toBe(answered.length + jobs.length);
}

describe('Redis failover under load', () => {
  it('Sentinel: the master killed, a replica promoted', async () => {
    const t: StartedTopology = await startSentinel();
    cleanup.push(() => t.stop());
    await sentinelsAcquainted(t);
    const master = await sentinelMaster(t);
    const env = { SWITCHYARD_REDIS_SENTINELS: t.endpoint.redisSentinels as string, SWITCHYARD_REDIS_MASTER: 'switchyard' };
    await failoverUnderLoad('sentinel', env, async () => {
      await t.servers.find((s) => s.port === master)?.kill();
    });
    expect(await sentinelMaster(t)).not.toBe(master);
  }, 120_000);

  it("Cluster: the master of the ledger's slot killed, its replica promoted", async () => {
    const t: StartedTopology = await startCluster(1);
    cleanup.push(() => t.stop());
    const env = { SWITCHYARD_REDIS_CLUSTER: t.endpoint.redisCluster as string };
    let killed = 0;
    await failoverUnderLoad('cluster', env, async () => {
      // The master that serves the capacity ledger's slot (on every request's path).
      const probe = new Redis({ port: t.servers[0]?.port as number, host: '127.0.0.1' });
      const slots = (await probe.cluster('SLOTS')) as unknown as Array<[number, number, [string, number]]>;
      const slot = Number(await probe.cluster('KEYSLOT', '{ledger}'));
      probe.disconnect();
      const owner = slots.find(([from, to]) => slot >= from && slot <= to)?.[2][1];
      killed = owner ?? 0;
      await t.servers.find((s) => s.port === owner)?.kill();
    });
    expect(killed).toBeGreaterThan(0);
  }, 120_000);
});
