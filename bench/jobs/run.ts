import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { BackgroundJobs } from '../../gateway/responses/background-jobs.js';
import { writeResults } from '../lib/fixture.js';
import { percentile } from '../lib/stats.js';

/**
 * Enqueue-to-start latency of background jobs on one Redis (issue 6): the gateway's real
 * `BackgroundJobs.enqueue` (one BullMQ add per job) at a fixed open-loop rate, consumed by a
 * BullMQ Worker with `switchyard worker`'s options in one or two other processes (workers scale
 * out per region), capacity free (the processor returns at once). `node dist/bench/jobs/run.js [--write]`.
 */
const REDIS_URL = process.env['BENCH_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const SECONDS = 5;
const CONSUMER = fileURLToPath(new URL('./consumer.js', import.meta.url));

/** How many jobs/s one worker process starts when a backlog waits: the ceiling of the open-loop runs. */
async function drainRate(total: number): Promise<number> {
  const prefix = `bench_jobs_${process.pid}_drain:`;
  const jobs = new BackgroundJobs({ redisUrl: REDIS_URL, redisPrefix: prefix, region: 'bench', attempts: 1 });
  await Promise.all(Array.from({ length: total }, (_, i) => jobs.enqueue(`job-${i}`)));
  let seen = 0;
  let firstAt = 0;
  let lastAt = 0;
  const child = spawn(process.execPath, [CONSUMER, REDIS_URL, prefix, 'bench'], { stdio: ['ignore', 'pipe', 'inherit'] });
  child.stdout.on('data', (c: Buffer) => {
    const n = c.toString().split('\n').filter((l) => l.startsWith('L ')).length;
    if (n > 0 && firstAt === 0) firstAt = performance.now();
    seen += n;
    lastAt = performance.now();
  });
  const deadline = Date.now() + 60_000;
  while (seen < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGTERM');
  await once(child, 'exit');
  await jobs.close();
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
  return (seen / Math.max(1, lastAt - firstAt)) * 1000;
}

async function runAt(rate: number, consumers: number): Promise<number[]> {
  const prefix = `bench_jobs_${process.pid}_${rate}_${consumers}:`;
  const total = rate * SECONDS;
  const latencies: number[] = [];
  let ready = 0;
  const children = Array.from({ length: consumers }, () => {
    const child = spawn(process.execPath, [CONSUMER, REDIS_URL, prefix, 'bench'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === 'ready') ready++;
        else if (line.startsWith('L ')) latencies.push(Number(line.slice(2)));
      }
    });
    return child;
  });
  while (ready < consumers) await new Promise((r) => setTimeout(r, 20));
  const jobs = new BackgroundJobs({ redisUrl: REDIS_URL, redisPrefix: prefix, region: 'bench', attempts: 1 });
  const t0 = performance.now();
  const sends: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    sends.push(jobs.enqueue(`job-${i}`));
  }
  await Promise.all(sends);
  const deadline = Date.now() + 30_000;
  while (latencies.length < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await Promise.all(children.map((c) => (c.kill('SIGTERM'), once(c, 'exit'))));
  await jobs.close();
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
  return latencies;
}

const lines: string[] = [];
const log = (s = ''): void => {
  lines.push(s);
  process.stdout.write(`${s}\n`);
};
log(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; ${SECONDS} s per rate, one local Redis`);
log();
log('| rate | worker processes | jobs | started | p50 ms | p99 ms | max ms |');
log('|---|---|---|---|---|---|---|');
for (const consumers of [1, 2]) {
  for (const rate of [200, 1000]) {
    const l = await runAt(rate, consumers);
    log(`| ${rate}/s | ${consumers} | ${rate * SECONDS} | ${l.length} | ${percentile(l, 50).toFixed(1)} | ${percentile(l, 99).toFixed(1)} | ${Math.max(...l).toFixed(1)} |`);
  }
}
log();
log(`Drain rate of one worker process (10,000 jobs enqueued first, then started as fast as it can): ${Math.round(await drainRate(10_000))} jobs/s`);
if (process.argv.includes('--write')) writeResults('jobs', lines);
