import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { BackgroundJobs, FETCH_LOOPS } from '../../gateway/responses/background-jobs.js';
import { writeResults } from '../lib/fixture.js';
import { percentile } from '../lib/stats.js';

/**
 * Enqueue-to-start latency of background jobs on one Redis (issue 6): the gateway's real
 * `BackgroundJobs.enqueue` (one BullMQ add per job) at a fixed open-loop rate, consumed by the
 * BullMQ Workers `switchyard worker` builds (`responseWorkers`) in one or two other processes,
 * capacity free (the processor returns at once). Rows with one fetch loop per process show what
 * the second loop (FETCH_LOOPS) buys; a Redis PING at the same rate from the same producer is the
 * floor (one round trip, no BullMQ). Times are epoch milliseconds with sub-millisecond resolution
 * (`performance.timeOrigin + performance.now()`) taken in the producer just before `enqueue` and
 * in the consumer as the processor starts. Each run enqueues for WARMUP_S + MEASURE_S seconds;
 * the first WARMUP_S seconds are reported apart (cold processes: JIT, first script loads, heap
 * growth), the rest is the steady state the target is about. Every configuration runs RUNS times.
 * `npm run bench:jobs -- [--write]`.
 */
const REDIS_URL = process.env['BENCH_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const WARMUP_S = 2;
const MEASURE_S = 8;
const RUNS = 3;
const CONSUMER = fileURLToPath(new URL('./consumer.js', import.meta.url));
const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Until every job has started, or `timeoutMs` (a lost job then shows as started < enqueued). */
async function untilStarted(started: () => number, total: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (started() < total && Date.now() < deadline) await sleep(20);
}

interface Run {
  readonly enqueued: number;
  readonly warm: number[];
  readonly cold: number[];
}

/** A consumer process; calls `onStart(id, at)` for every job it starts. */
async function startConsumer(prefix: string, loops: number, onStart: (id: string, at: number) => void): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CONSUMER, REDIS_URL, prefix, 'bench', String(loops)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let buf = '';
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  child.stdout?.on('data', (c: Buffer) => {
    buf += c.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const [kind, id, at] = buf.slice(0, nl).split(' ');
      buf = buf.slice(nl + 1);
      if (kind === 'ready') ready();
      else if (kind === 'S' && id !== undefined) onStart(id, Number(at));
    }
  });
  await isReady;
  return child;
}

async function cleanUp(prefix: string, children: readonly ChildProcess[], jobs: BackgroundJobs): Promise<void> {
  await Promise.all(children.map((c) => (c.kill('SIGTERM'), once(c, 'exit'))));
  await jobs.close();
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
}

/** Splits a run's latencies (indexed by enqueue order) into the warm-up and the measured part. */
function split(rate: number, latency: Float64Array): Run {
  const cut = rate * WARMUP_S;
  const done = (xs: Float64Array): number[] => Array.from(xs).filter((x) => !Number.isNaN(x));
  return { enqueued: latency.length, cold: done(latency.subarray(0, cut)), warm: done(latency.subarray(cut)) };
}

/** Calls `send(i)` at `rate` per second, open loop, for the whole run. */
async function paced(rate: number, total: number, send: (i: number) => Promise<void>): Promise<void> {
  const t0 = performance.now();
  const sends: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const wait = t0 + (i * 1000) / rate - performance.now();
    if (wait > 1) await sleep(wait);
    sends.push(send(i));
  }
  await Promise.all(sends);
}

/** The floor: one Redis round trip (PING) per tick from the producer, no BullMQ. */
async function pingAt(rate: number): Promise<Run> {
  const redis = new Redis(REDIS_URL);
  await redis.ping();
  const latency = new Float64Array(rate * (WARMUP_S + MEASURE_S)).fill(NaN);
  await paced(rate, latency.length, async (i) => {
    const at = now();
    await redis.ping();
    latency[i] = now() - at;
  });
  await redis.quit();
  return split(rate, latency);
}

async function runAt(rate: number, consumers: number, loops: number, run: number): Promise<Run> {
  const prefix = `bench_jobs_${process.pid}_${rate}_${consumers}_${loops}_${run}:`;
  const total = rate * (WARMUP_S + MEASURE_S);
  const enqueuedAt = new Float64Array(total);
  const latency = new Float64Array(total).fill(NaN);
  let started = 0;
  const onStart = (id: string, at: number): void => {
    const i = Number(id.slice(4));
    latency[i] = at - (enqueuedAt[i] ?? NaN);
    started++;
  };
  const children = await Promise.all(Array.from({ length: consumers }, () => startConsumer(prefix, loops, onStart)));
  const jobs = new BackgroundJobs({ redis: REDIS_URL, redisPrefix: prefix, region: 'bench', attempts: 1 });
  await paced(rate, total, (i) => {
    enqueuedAt[i] = now();
    return jobs.enqueue(`job-${i}`);
  });
  await untilStarted(() => started, total, 30_000);
  await cleanUp(prefix, children, jobs);
  return split(rate, latency);
}

/** How many jobs/s one worker process starts when a backlog waits: the ceiling of the open-loop runs. */
async function drainRate(total: number): Promise<number> {
  const prefix = `bench_jobs_${process.pid}_drain:`;
  const jobs = new BackgroundJobs({ redis: REDIS_URL, redisPrefix: prefix, region: 'bench', attempts: 1 });
  await Promise.all(Array.from({ length: total }, (_, i) => jobs.enqueue(`job-${i}`)));
  let seen = 0;
  let firstAt = 0;
  let lastAt = 0;
  const child = await startConsumer(prefix, FETCH_LOOPS, (_id, at) => {
    if (firstAt === 0) firstAt = at;
    lastAt = at;
    seen++;
  });
  await untilStarted(() => seen, total, 60_000);
  await cleanUp(prefix, [child], jobs);
  return (seen / Math.max(1, lastAt - firstAt)) * 1000;
}

const lines: string[] = [];
const log = (s = ''): void => {
  lines.push(s);
  process.stdout.write(`${s}\n`);
};
const ms = (xs: readonly number[], p: number): string => percentile(xs, p).toFixed(2);
log(
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; ` +
    `per run ${WARMUP_S} s warm-up + ${MEASURE_S} s measured, ${RUNS} runs per path, paths interleaved, one local Redis`,
);
log();
log('| rate | path | run | started / enqueued | steady p50 ms | steady p99 ms | steady max ms | warm-up p99 ms |');
log('|---|---|---|---|---|---|---|---|');
// `--rate N` narrows the table while investigating.
const rateArg = process.argv.indexOf('--rate');
const rates = rateArg === -1 ? [200, 1000] : [Number(process.argv[rateArg + 1])];
const row = (rate: number, path: string, run: number, r: Run): void =>
  log(
    `| ${rate}/s | ${path} | ${run} | ${r.cold.length + r.warm.length} / ${r.enqueued} | ${ms(r.warm, 50)} | ${ms(r.warm, 99)} | ` +
      `${Math.max(...r.warm).toFixed(2)} | ${ms(r.cold, 99)} |`,
  );
const paths: readonly { name: string; consumers: number; loops: number }[] = [
  { name: `1 worker process, ${FETCH_LOOPS} fetch loops (production)`, consumers: 1, loops: FETCH_LOOPS },
  { name: '1 worker process, 1 fetch loop', consumers: 1, loops: 1 },
  { name: `2 worker processes, ${FETCH_LOOPS} fetch loops each`, consumers: 2, loops: FETCH_LOOPS },
];
for (const rate of rates) {
  for (let run = 1; run <= RUNS; run++) {
    // Interleaved, so that a noisy minute of the shared machine hits every path alike.
    for (const p of paths) row(rate, p.name, run, await runAt(rate, p.consumers, p.loops, run));
    row(rate, 'floor: Redis PING round trip', run, await pingAt(rate));
  }
}
log();
log(`Drain rate of one worker process (10,000 jobs enqueued first, then started as fast as it can): ${Math.round(await drainRate(10_000))} jobs/s`);
if (process.argv.includes('--write')) writeResults('jobs', lines);
