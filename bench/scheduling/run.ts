import { cpus } from 'node:os';
import { LeastWorkPolicy } from '../../scheduler/placement/least-work.js';
import type { PlacementPolicy } from '../../scheduler/placement/policy.js';
import { RoundRobinPolicy } from '../../scheduler/placement/round-robin.js';
import { writeResults } from '../lib/fixture.js';
import { percentile } from '../lib/stats.js';
import { LeastConnectionsPolicy, PowerOfTwoPolicy, WeightedRoundRobinPolicy } from './baselines.js';
import { simulate, type SimNodeSpec, type SimRequest } from './fleet-sim.js';

/**
 * Placement policies on a simulated clock (bench/scheduling/fleet-sim.ts): a heterogeneous fleet,
 * Poisson arrivals, lognormal prompt and output lengths, from 50% to 100% of nominal decode
 * capacity. `node dist/bench/scheduling/run.js [--write]`. Same seeded workload for every policy.
 */
const FLEET: SimNodeSpec[] = [
  { id: 'h100', tokensPerSecond: 2400, maxSequences: 64 },
  { id: 'a100', tokensPerSecond: 1200, maxSequences: 32 },
  { id: 'l40s', tokensPerSecond: 500, maxSequences: 16 },
  { id: 'l4', tokensPerSecond: 150, maxSequences: 8 },
];
const CAPACITY = FLEET.reduce((s, n) => s + n.tokensPerSecond, 0);
const SLO = { ttftMs: 2000, tpotMs: 100 };
const SECONDS = process.argv.includes('--quick') ? 120 : 300;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function lognormal(random: () => number, median: number, sigma: number): number {
  const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  return Math.max(1, Math.round(median * Math.exp(sigma * z)));
}

function workload(load: number, seed: number): SimRequest[] {
  const random = rng(seed);
  const meanOutput = 200 * Math.exp(0.6 ** 2 / 2);
  const rate = (load * CAPACITY) / meanOutput; // requests per second
  const out: SimRequest[] = [];
  for (let t = 0; t < SECONDS * 1000; ) {
    t += (-Math.log(1 - random()) / rate) * 1000;
    out.push({ arrivalMs: t, promptTokens: lognormal(random, 500, 0.8), outputTokens: Math.min(4000, lognormal(random, 200, 0.6)) });
  }
  return out;
}

const policies: Array<() => PlacementPolicy> = [
  () => new RoundRobinPolicy(),
  () => new LeastConnectionsPolicy(),
  () => new PowerOfTwoPolicy(),
  () => new WeightedRoundRobinPolicy(),
  () => new LeastWorkPolicy(),
];
const loads = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0];

const lines: string[] = [];
const out = (s = ''): void => {
  lines.push(s);
  process.stdout.write(s + '\n');
};
out(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; ${SECONDS} s simulated per point`);
out(`Fleet: ${FLEET.map((n) => `${n.id} ${n.tokensPerSecond} tok/s × ${n.maxSequences} seqs`).join(', ')} (nominal ${CAPACITY} tok/s). SLO: TTFT ≤ ${SLO.ttftMs} ms and TPOT ≤ ${SLO.tpotMs} ms.`);
out();
out('| policy | load | TTFT p50 ms | TTFT p99 ms | TPOT p99 ms | SLO attainment | goodput tok/s |');
out('|---|---|---|---|---|---|---|');
const best = new Map<string, number>();
for (const make of policies) {
  for (const load of loads) {
    const reqs = workload(load, 42 + Math.round(load * 100));
    const policy = make();
    const res = simulate(FLEET, reqs, policy);
    const ok = res.filter((r) => r.ttftMs <= SLO.ttftMs && r.tpotMs <= SLO.tpotMs);
    const attainment = ok.length / reqs.length;
    const goodput = ok.reduce((s, r) => s + r.outputTokens, 0) / SECONDS;
    if (attainment >= 0.99) best.set(policy.name, Math.max(best.get(policy.name) ?? 0, load));
    out(`| ${policy.name} | ${Math.round(load * 100)}% | ${percentile(res.map((r) => r.ttftMs), 50).toFixed(0)} | ${percentile(res.map((r) => r.ttftMs), 99).toFixed(0)} | ${percentile(res.map((r) => r.tpotMs), 99).toFixed(0)} | ${(attainment * 100).toFixed(1)}% | ${goodput.toFixed(0)} |`);
  }
}
out();
out('| policy | highest load with ≥ 99% SLO attainment |');
out('|---|---|');
for (const make of policies) {
  const name = make().name;
  out(`| ${name} | ${best.has(name) ? `${Math.round((best.get(name) ?? 0) * 100)}%` : 'below 50%'} |`);
}
if (process.argv.includes('--write')) writeResults('scheduling', lines);
