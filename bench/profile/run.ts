import { mkdtempSync, readdirSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { summariseProfile } from '../lib/cpu-profile.js';
import { dropBenchSchema } from '../lib/fixture.js';
import { chatCaller, closedLoopWith, RUNGS, startRung, type RungId } from '../lib/ladder.js';
import { cpuMicros, startNode, threadCpuMicros } from '../lib/processes.js';

/**
 * Where one rung of the feature ladder spends its CPU: the proxy runs under `node --cpu-prof`
 * through the closed-loop load of `bench:features`, and the samples taken during the load (not
 * start-up or shutdown) are ranked by self time, per function and per place (our module, npm
 * package, Node internals).
 * `npm run bench:profile -- [--rung passthrough|no-auth|keys|redis] [--seconds 10] [--top 25] [--cli <checkout>/dist/cli/main.js]`
 */
// --cli: another built checkout's dist/cli/main.js (profile a baseline the same way).
const { values } = parseArgs({ options: { rung: { type: 'string', default: 'redis' }, seconds: { type: 'string', default: '10' }, top: { type: 'string', default: '25' }, cli: { type: 'string' } } });
const id = values.rung as RungId;
const label = RUNGS.find((r) => r.id === id)?.label;
if (label === undefined) throw new Error(`--rung must be one of ${RUNGS.map((r) => r.id).join(', ')}`);
const seconds = Number(values.seconds);
const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
const run = `bench_${Date.now().toString(36)}`;
const dir = mkdtempSync(join(tmpdir(), 'switchyard-profile-'));

const upstream = await startNode(here('../overhead/canned-upstream.js'), [], 'upstream listening');
try {
  const rung = await startRung(id, upstream.url, run, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=250'], values.cli);
  const caller = chatCaller(rung.proxy.url, rung.apiKey);
  for (let i = 0; i < 2000; i++) if (!(await caller.call())) throw new Error('warm-up request failed');
  const pid = rung.proxy.proc.pid as number;
  const cpu0 = cpuMicros(pid);
  const threads0 = threadCpuMicros(pid);
  const loadStart = performance.now();
  const r = await closedLoopWith(caller.call, 64, seconds);
  const loadEnd = performance.now();
  const us = (cpuMicros(pid) - cpu0) / r.done;
  const threads = [...threadCpuMicros(pid)].map(([name, t]) => ({ name, us: (t - (threads0.get(name) ?? 0)) / r.done })).filter((t) => t.us >= 0.5).sort((a, b) => b.us - a.us);
  await caller.close();
  await rung.stop();
  const exited = performance.now();
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) throw new Error(`no profile written in ${dir}`);
  const p = summariseProfile(join(dir, file), (exited - loadStart) * 1000, (exited - loadEnd) * 1000, Number(values.top));
  // The profile samples the main thread only: its shares are spread over that thread's CPU time.
  const main = threads.find((t) => t.name === `node/${pid}`)?.us ?? us;
  const table = (title: string, entries: readonly { name: string; share: number }[]): void => {
    process.stdout.write(`\n| ${title} | share | µs/request |\n|---|---|---|\n`);
    for (const e of entries) process.stdout.write(`| \`${e.name}\` | ${(e.share * 100).toFixed(1)}% | ${(e.share * main).toFixed(1)} |\n`);
  };
  process.stdout.write(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${new Date().toISOString().slice(0, 16)}Z\n`);
  process.stdout.write(`Rung: ${label}; ${r.rps.toFixed(0)} requests/s, ${us.toFixed(0)} µs CPU/request (profiler included), ${r.errors} errors; ${p.samples} samples (profile: ${join(dir, file)})\n`);
  process.stdout.write(`CPU µs/request by thread: ${threads.map((t) => `${t.name.replace(/\/\d+$/, '')} ${t.us.toFixed(0)}`).join(', ')}\n`);
  table('function (self time)', p.functions);
  table('place (self time)', p.places);
  table('our function (total time: itself and what it calls)', p.ours);
} finally {
  await upstream.stop();
  await dropBenchSchema(run);
}
