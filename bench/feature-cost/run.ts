import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { MemoryRateLimiter } from '../../core/ratelimit/memory-rate-limiter.js';
import type { RateLimiter } from '../../core/ratelimit/rate-limiter.js';
import { RedisRateLimiter } from '../../core/ratelimit/redis-rate-limiter.js';
import { target } from '../lib/load.js';
import { BENCH_PG, CLI, dropBenchSchema, startBenchGateway, writeResults } from '../lib/fixture.js';
import { cpuMicros, startNode, type Child } from '../lib/processes.js';

/**
 * The feature-cost ladder: gateway CPU per request as features are switched on, side by side in
 * one run against the same canned upstream, then the rate limiter's own checks per second.
 * `node dist/bench/feature-cost/run.js [--write] [--quick]`; needs Postgres and Redis on 127.0.0.1.
 */
const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
const args = new Set(process.argv.slice(2));
const SECONDS = args.has('--quick') ? 2 : 5;
const REDIS = process.env['BENCH_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const run = `bench_${Date.now().toString(36)}`;
const ADMIN = 'bench-admin';

const lines: string[] = [];
const out = (s = ''): void => {
  lines.push(s);
  process.stdout.write(s + '\n');
};

const body = JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'How much does each feature cost?' }], max_tokens: 8 });

async function measure(name: string, url: string, pid: number, auth: string | undefined): Promise<void> {
  const t = target(name, url);
  const headers = auth === undefined ? {} : { authorization: `Bearer ${auth}` };
  const shot = { path: '/v1/chat/completions', body };
  // warm-up, then the measured run
  const request = async (): Promise<boolean> => {
    const res = await t.pool.request({ path: shot.path, method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    await res.body.text();
    return res.statusCode === 200;
  };
  for (let i = 0; i < 500; i++) if (!(await request())) throw new Error(`${name}: warm-up request failed`);
  const cpu0 = cpuMicros(pid);
  const r = await closedLoopWith(request, 64, SECONDS);
  const us = (cpuMicros(pid) - cpu0) / r.done;
  out(`| ${name} | ${r.rps.toFixed(0)} | ${r.errors} | ${us.toFixed(0)} |`);
  await t.pool.close();
}

async function closedLoopWith(fn: () => Promise<boolean>, concurrency: number, seconds: number): Promise<{ rps: number; errors: number; done: number }> {
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

function gateway(env: NodeJS.ProcessEnv, upstream: string): Promise<Child> {
  return startBenchGateway(upstream, 'bench', run, { SWITCHYARD_REDIS_PREFIX: `${run}:`, SWITCHYARD_ADMIN_TOKEN: ADMIN, ...env });
}

async function createKey(url: string): Promise<string> {
  const res = await fetch(`${url}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant: 'bench', name: 'bench', limits: { requestsPerMinute: 100_000_000, tokensPerMinute: 2_000_000_000, maxConcurrent: 100_000 } }),
  });
  return ((await res.json()) as { key: string }).key;
}

async function limiterChecks(name: string, limiter: RateLimiter): Promise<void> {
  const limits = { requestsPerMinute: 1_000_000_000, tokensPerMinute: 1_000_000_000, maxConcurrent: 100_000 };
  const key = `bench-${name}`;
  const r = await closedLoopWith(async () => {
    const a = await limiter.admit(key, limits, 100);
    await limiter.settle(key, limits, a.leaseId as string, 100, 80);
    return a.allowed;
  }, 64, SECONDS);
  out(`| ${name} | ${r.rps.toFixed(0)} |`);
}

const children: Child[] = [];
try {
  const upstream = await startNode(here('../overhead/canned-upstream.js'), [], 'upstream listening');
  children.push(upstream);
  out(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}`);
  out();
  out(`### Gateway CPU per request as features are added (closed loop, 64 concurrent, ${SECONDS} s each)`);
  out();
  out('| configuration | requests/s | errors | gateway CPU µs/request |');
  out('|---|---|---|---|');
  const pass = await startNode(here('../overhead/passthrough.js'), [upstream.url], 'passthrough listening');
  children.push(pass);
  await measure('bare Fastify+undici passthrough (anchor)', pass.url, pass.proc.pid as number, undefined);
  const plain = await gateway({ SWITCHYARD_AUTH: 'none' }, upstream.url);
  children.push(plain);
  await measure('gateway: routing, retries, metrics, usage records (no auth)', plain.url, plain.proc.pid as number, undefined);
  await plain.stop();
  const mem = await gateway({ SWITCHYARD_AUTH: 'keys' }, upstream.url);
  children.push(mem);
  await measure('+ API key auth + rate limits in memory', mem.url, mem.proc.pid as number, await createKey(mem.url));
  await mem.stop();
  const red = await gateway({ SWITCHYARD_AUTH: 'keys', REDIS_URL: REDIS }, upstream.url);
  children.push(red);
  const worker = await startNode(CLI, ['worker', '--port', '0'], 'worker running', { DATABASE_URL: BENCH_PG, SWITCHYARD_DATABASE_SCHEMA: run, SWITCHYARD_REDIS_PREFIX: `${run}:`, REDIS_URL: REDIS });
  children.push(worker);
  await measure('+ limits and usage buffer in Redis (worker writes usage)', red.url, red.proc.pid as number, await createKey(red.url));
  out();
  out(`### Rate limiter checks per second (one process, 64 in flight, ${SECONDS} s)`);
  out();
  out('| limiter | admissions + settles per second |');
  out('|---|---|');
  await limiterChecks('memory', new MemoryRateLimiter());
  const redis = new Redis(REDIS, { enableAutoPipelining: true });
  await limiterChecks('redis (one connection, auto-pipelined EVALSHA)', new RedisRateLimiter({ redis, keyPrefix: `${run}:` }));
  const keys = await redis.keys(`${run}:*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
} finally {
  await Promise.all(children.map((c) => c.stop()));
  await dropBenchSchema(run);
}

if (args.has('--write')) writeResults('feature-cost', lines);
