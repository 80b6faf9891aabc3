import { fileURLToPath } from 'node:url';
import { Pool, request } from 'undici';
import { BENCH_PG, CLI, startBenchGateway } from './fixture.js';
import { cpuMicros, startNode, type Child } from './processes.js';

/**
 * The feature ladder shared by `bench:features` and `bench:profile`: the bare passthrough anchor,
 * then the gateway with more of the production path switched on at each rung.
 */
export type RungId = 'passthrough' | 'no-auth' | 'keys' | 'redis';

export const RUNGS: readonly { readonly id: RungId; readonly label: string }[] = [
  { id: 'passthrough', label: 'bare Fastify+undici passthrough (anchor)' },
  { id: 'no-auth', label: 'gateway: routing, retries, metrics, usage records (no auth)' },
  { id: 'keys', label: '+ API key auth + rate limits in memory' },
  { id: 'redis', label: '+ limits, ledger and usage buffer in Redis (worker writes usage)' },
];

export const BENCH_REDIS = process.env['BENCH_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const ADMIN = 'bench-admin';
const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));

export interface Rung {
  /** The process under measurement. */
  readonly proxy: Child;
  /** Bearer token the load must send, if the rung authenticates. */
  readonly apiKey: string | undefined;
  stop(): Promise<void>;
}

/** Starts one rung in front of `upstream`; `run` names its Postgres schema and Redis key prefix. */
export async function startRung(id: RungId, upstream: string, run: string, nodeArgs: readonly string[] = [], cli = CLI): Promise<Rung> {
  if (id === 'passthrough') {
    const proxy = await startNode(here('../overhead/passthrough.js'), [upstream], 'passthrough listening', {}, nodeArgs);
    return { proxy, apiKey: undefined, stop: () => proxy.stop() };
  }
  const env: NodeJS.ProcessEnv = { SWITCHYARD_REDIS_PREFIX: `${run}:`, SWITCHYARD_ADMIN_TOKEN: ADMIN };
  env['SWITCHYARD_AUTH'] = id === 'no-auth' ? 'none' : 'keys';
  if (id === 'redis') env['REDIS_URL'] = BENCH_REDIS;
  const proxy = await startBenchGateway(upstream, 'bench', run, env, nodeArgs, cli);
  const others: Child[] = [];
  if (id === 'redis') {
    others.push(await startNode(cli, ['worker', '--port', '0'], 'worker running', {
      DATABASE_URL: BENCH_PG, SWITCHYARD_DATABASE_SCHEMA: run, SWITCHYARD_REDIS_PREFIX: `${run}:`, REDIS_URL: BENCH_REDIS,
    }));
  }
  const apiKey = id === 'no-auth' ? undefined : await createKey(proxy.url);
  return { proxy, apiKey, stop: async () => { await proxy.stop(); await Promise.all(others.map((o) => o.stop())); } };
}

async function createKey(url: string): Promise<string> {
  const res = await request(`${url}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant: 'bench', name: 'bench', limits: { requestsPerMinute: 100_000_000, tokensPerMinute: 2_000_000_000, maxConcurrent: 100_000 } }),
  });
  if (res.statusCode !== 201 && res.statusCode !== 200) throw new Error(`creating the bench key: HTTP ${res.statusCode}: ${await res.body.text()}`);
  return ((await res.body.json()) as { key: string }).key;
}

/** Closed loop: `concurrency` callers of `fn` for `seconds`; `fn` resolves true on success. */
export async function closedLoopWith(fn: () => Promise<boolean>, concurrency: number, seconds: number): Promise<{ rps: number; errors: number; done: number }> {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  let errors = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        if (await fn().catch(() => false)) done++;
        else errors++;
      }
    }),
  );
  return { rps: done / ((performance.now() - t0) / 1000), errors, done };
}

const CHAT_BODY = JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'How much does each feature cost?' }], max_tokens: 8 });

/** One non-streamed chat completion per call over a keep-alive pool; resolves true on HTTP 200. */
export function chatCaller(url: string, apiKey: string | undefined): { call: () => Promise<boolean>; close: () => Promise<void> } {
  const pool = new Pool(url, { connections: 512, keepAliveTimeout: 60_000, pipelining: 1 });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (apiKey !== undefined) headers['authorization'] = `Bearer ${apiKey}`;
  return {
    call: async () => {
      const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body: CHAT_BODY });
      await res.body.text();
      return res.statusCode === 200;
    },
    close: () => pool.close(),
  };
}

/** One thing measured by `rotatingClosedLoops`: its call, and the process whose CPU it costs. */
export interface LoopTarget {
  readonly call: () => Promise<boolean>;
  readonly pid?: number | undefined;
}

/**
 * A closed loop of `concurrency` per target for `seconds` each, taken in `sliceS` slices in turn
 * (who goes first rotates), so that the shared machine's drift (other tenants, thermal) hits every
 * target alike. Per target: requests/s, errors and the process's CPU µs per request (NaN without pid).
 */
export async function rotatingClosedLoops(targets: readonly LoopTarget[], seconds: number, sliceS = 0.5, concurrency = 64): Promise<{ rps: number; errors: number; cpuUs: number }[]> {
  const totals = targets.map(() => ({ done: 0, errors: 0, cpu: 0, ms: 0 }));
  for (let round = 0; round < seconds / sliceS; round++) {
    for (let k = 0; k < targets.length; k++) {
      const i = (k + round) % targets.length;
      const target = targets[i] as LoopTarget;
      const sum = totals[i] as { done: number; errors: number; cpu: number; ms: number };
      const cpu0 = target.pid === undefined ? 0 : cpuMicros(target.pid);
      const t0 = performance.now();
      const r = await closedLoopWith(target.call, concurrency, sliceS);
      sum.ms += performance.now() - t0;
      if (target.pid !== undefined) sum.cpu += cpuMicros(target.pid) - cpu0;
      sum.done += r.done;
      sum.errors += r.errors;
    }
  }
  return totals.map((t, i) => ({ rps: t.done / (t.ms / 1000), errors: t.errors, cpuUs: targets[i]?.pid === undefined ? NaN : t.cpu / t.done }));
}
