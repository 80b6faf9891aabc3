import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { MemoryRateLimiter } from '../../core/ratelimit/memory-rate-limiter.js';
import type { RateLimiter } from '../../core/ratelimit/rate-limiter.js';
import { RedisRateLimiter } from '../../core/ratelimit/redis-rate-limiter.js';
import { dropBenchSchema, writeResults } from '../lib/fixture.js';
import { BENCH_REDIS, chatCaller, closedLoopWith, rotatingClosedLoops, RUNGS, startRung, type Rung, type RungId } from '../lib/ladder.js';
import { startNode, type Child } from '../lib/processes.js';

/**
 * The feature-cost ladder: gateway CPU per request as features are switched on, side by side in
 * one run against the same canned upstream, then the rate limiter's own checks per second.
 * `node dist/bench/feature-cost/run.js [--write] [--quick]`; needs Postgres and Redis on 127.0.0.1.
 */
const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
const argv = process.argv.slice(2);
const args = new Set(argv);
// `--rungs passthrough,redis`: only those rungs (quick comparisons); the limiter table is then skipped.
const rungsArg = argv.find((a) => a.startsWith('--rungs='))?.slice('--rungs='.length);
const rungs = rungsArg === undefined ? RUNGS : RUNGS.filter((r) => rungsArg.split(',').includes(r.id));
// `--baseline=<checkout>`: each gateway rung also runs from another built checkout (e.g. a
// `git worktree` of main), side by side in the same rotation: an A/B of one change.
const baseline = argv.find((a) => a.startsWith('--baseline='))?.slice('--baseline='.length);
const SECONDS = args.has('--quick') ? 2 : 6;
const SLICE_S = 0.5;
const run = `bench_${Date.now().toString(36)}`;

const lines: string[] = [];
const out = (s = ''): void => {
  lines.push(s);
  process.stdout.write(s + '\n');
};

interface Measured {
  readonly id: RungId;
  readonly label: string;
  readonly rps: number;
  readonly errors: number;
  readonly cpuUs: number;
}

/** Every rung runs at once (idle while not measured); the load rotates among them (rotatingClosedLoops). */
async function measureAll(started: readonly { id: RungId; label: string; rung: Rung }[]): Promise<Measured[]> {
  const callers = started.map((s) => chatCaller(s.rung.proxy.url, s.rung.apiKey));
  for (const [i, c] of callers.entries()) {
    for (let k = 0; k < 1000; k++) if (!(await c.call())) throw new Error(`${started[i]?.label}: warm-up request failed`);
  }
  const results = await rotatingClosedLoops(started.map((s, i) => ({ call: (callers[i] as { call: () => Promise<boolean> }).call, pid: s.rung.proxy.proc.pid })), SECONDS, SLICE_S);
  await Promise.all(callers.map((c) => c.close()));
  return started.map((s, i) => ({ id: s.id, label: s.label, ...(results[i] as { rps: number; errors: number; cpuUs: number }) }));
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

/** Ends the run early (a subset of rungs) without being an error. */
class Done extends Error {}

const children: Child[] = [];
try {
  const upstream = await startNode(here('../overhead/canned-upstream.js'), [], 'upstream listening');
  children.push(upstream);
  out(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}`);
  out();
  out(`### Gateway CPU per request as features are added (closed loop, 64 concurrent, ${SECONDS} s each in ${SLICE_S} s slices taken in turn)`);
  out();
  out('| configuration | requests/s | errors | gateway CPU µs/request | throughput vs anchor | CPU vs anchor |');
  out('|---|---|---|---|---|---|');
  const started: { id: RungId; label: string; rung: Rung }[] = [];
  for (const { id, label } of rungs) {
    const rung = await startRung(id, upstream.url, run);
    children.push({ proc: rung.proxy.proc, url: rung.proxy.url, stop: () => rung.stop() });
    started.push({ id, label, rung });
    if (baseline !== undefined && id !== 'passthrough') {
      const before = await startRung(id, upstream.url, `${run}b`, [], join(baseline, 'dist/cli/main.js'));
      children.push({ proc: before.proxy.proc, url: before.proxy.url, stop: () => before.stop() });
      started.push({ id, label: `${label} [baseline]`, rung: before });
    }
  }
  const measured = await measureAll(started);
  const anchor = measured.find((m) => m.id === 'passthrough');
  for (const m of measured) {
    const vs = anchor === undefined || m === anchor ? ['', ''] : [`${((m.rps / anchor.rps) * 100).toFixed(0)}%`, `${(m.cpuUs / anchor.cpuUs).toFixed(2)}×`];
    out(`| ${m.label} | ${m.rps.toFixed(0)} | ${m.errors} | ${m.cpuUs.toFixed(0)} | ${vs[0]} | ${vs[1]} |`);
  }
  const noAuth = measured.find((m) => m.id === 'no-auth' && !m.label.endsWith('[baseline]'));
  const prod = measured.find((m) => m.id === 'redis' && !m.label.endsWith('[baseline]'));
  if (anchor !== undefined && (noAuth !== undefined || prod !== undefined)) {
    out();
    out('Against the targets of issue #14 (ratios to the anchor in this run):');
    out();
    out('| target | measured | met? |');
    out('|---|---|---|');
    const row = (what: string, ratio: number, limit: number, atMost: boolean, unit: (x: number) => string): void =>
      out(`| ${what} ${atMost ? '≤' : '≥'} ${unit(limit)} | ${unit(ratio)} | ${(atMost ? ratio <= limit : ratio >= limit) ? 'yes' : 'no'} |`);
    const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
    const times = (x: number): string => `${x.toFixed(2)}×`;
    if (prod !== undefined) {
      row('production path CPU/request', prod.cpuUs / anchor.cpuUs, 2, true, times);
      row('production path throughput', prod.rps / anchor.rps, 0.5, false, pct);
    }
    if (noAuth !== undefined) {
      row('no auth CPU/request', noAuth.cpuUs / anchor.cpuUs, 1.4, true, times);
      row('no auth throughput', noAuth.rps / anchor.rps, 0.8, false, pct);
    }
  }
  if (rungsArg !== undefined) throw new Done();
  out();
  out(`### Rate limiter checks per second (one process, 64 in flight, ${SECONDS} s)`);
  out();
  out('| limiter | admissions + settles per second |');
  out('|---|---|');
  await limiterChecks('memory', new MemoryRateLimiter());
  // As the gateway's connection: no auto-pipelining; the limiter sends one script per key and turn.
  const redis = new Redis(BENCH_REDIS, { enableAutoPipelining: false });
  await limiterChecks('redis (one connection; the admissions, then the settles, of one turn as one EVALSHA)', new RedisRateLimiter({ redis, keyPrefix: `${run}:` }));
  const keys = await redis.keys(`${run}:*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
} catch (err) {
  if (!(err instanceof Done)) throw err;
} finally {
  await Promise.all(children.map((c) => c.stop()));
  await dropBenchSchema(run);
  if (baseline !== undefined) await dropBenchSchema(`${run}b`);
}

if (args.has('--write')) writeResults('feature-cost', lines);
