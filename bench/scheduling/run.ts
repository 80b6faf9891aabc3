import { cpus } from 'node:os';
import { DEFAULT_PLACEMENT_OPTIONS, ExpectedCompletionPolicy } from '../../scheduler/placement/expected-completion.js';
import { LeastWorkPolicy } from '../../scheduler/placement/least-work.js';
import { RoundRobinPolicy } from '../../scheduler/placement/round-robin.js';
import { writeResults } from '../lib/fixture.js';
import { percentile } from '../lib/stats.js';
import { LeastConnectionsPolicy, PowerOfTwoPolicy, WeightedRoundRobinPolicy } from './baselines.js';
import { AdmissionQueueDispatch, ImmediateDispatch } from './dispatch.js';
import { PER_SEQUENCE_MAX_TPS, PREFILL_FACTOR, simulate, type Dispatcher, type RequestSource, type SimNodeSpec, type SimResult } from './fleet-sim.js';
import { conversations, poisson } from './workloads.js';

/**
 * Placement policies on a simulated clock (bench/scheduling/fleet-sim.ts): a heterogeneous fleet,
 * from 50% to 100% of nominal capacity, two workloads (independent requests; multi-turn
 * conversations with prefix caching). `node dist/bench/scheduling/run.js [--quick] [--write]`.
 * The same seeded workload for every policy at a load.
 */
const CACHE_SECONDS = 100;
const FLEET: SimNodeSpec[] = [
  { id: 'h100', tokensPerSecond: 2400, maxSequences: 64, prefixCacheTokens: 2400 * CACHE_SECONDS },
  { id: 'a100', tokensPerSecond: 1200, maxSequences: 32, prefixCacheTokens: 1200 * CACHE_SECONDS },
  { id: 'l40s', tokensPerSecond: 500, maxSequences: 16, prefixCacheTokens: 500 * CACHE_SECONDS },
  { id: 'l4', tokensPerSecond: 150, maxSequences: 8, prefixCacheTokens: 150 * CACHE_SECONDS },
];
const CAPACITY = FLEET.reduce((s, n) => s + n.tokensPerSecond, 0);
const SLO = { ttftMs: 2000, tpotMs: 100 };
const SECONDS = process.argv.includes('--quick') ? 120 : 600;
/** The gateway's default queue deadline for interactive requests. */
const DEADLINE_MS = 30_000;
/** `--seed N` reruns everything on another draw, to see how much of a difference is noise. */
const seedAt = process.argv.indexOf('--seed');
const SEED = seedAt < 0 ? 42 : Number(process.argv[seedAt + 1]);

function switchyard(name: string, affinity: boolean): Dispatcher {
  return new AdmissionQueueDispatch(new ExpectedCompletionPolicy(DEFAULT_PLACEMENT_OPTIONS), { name, affinity, deadlineMs: DEADLINE_MS });
}

const independent: Array<() => Dispatcher> = [
  () => new ImmediateDispatch(new RoundRobinPolicy()),
  () => new ImmediateDispatch(new LeastConnectionsPolicy()),
  () => new ImmediateDispatch(new PowerOfTwoPolicy()),
  () => new ImmediateDispatch(new WeightedRoundRobinPolicy()),
  () => new ImmediateDispatch(new LeastWorkPolicy(), 'least-work (issue 2)'),
  () => switchyard('switchyard', false),
];
const independentLoads = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 1.0];

const conversational: Array<() => Dispatcher> = [
  () => switchyard('switchyard (affinity)', true),
  () => switchyard('switchyard (no affinity)', false),
  () => new ImmediateDispatch(new WeightedRoundRobinPolicy()),
  () => new ImmediateDispatch(new LeastConnectionsPolicy()),
  () => new ImmediateDispatch(new RoundRobinPolicy()),
  () => new ImmediateDispatch(new PowerOfTwoPolicy()),
];
/** Load counts prompts as uncached, so cache hits leave headroom: 120% is past nominal on purpose. */
const conversationalLoads = [0.6, 0.8, 1.0, 1.2];

interface Summary {
  readonly ttftP50: number;
  readonly ttftP99: number;
  readonly tpotP99: number;
  /** Within the SLO over every request, rejected and unfinished ones included. */
  readonly attainment: number;
  readonly rejected: number;
  /** Prompt tokens served from a prefix cache. */
  readonly hit: number;
  /** Output tokens of requests within the SLO, per second of the arrival window. */
  readonly goodput: number;
}

function run(make: () => Dispatcher, source: RequestSource): { name: string; summary: Summary } {
  const dispatcher = make();
  const result = simulate(FLEET, source, dispatcher, { limitMs: SECONDS * 1000 + 600_000 });
  return { name: dispatcher.name, summary: summarise(result, source.total) };
}

function summarise(result: SimResult, total: number): Summary {
  const served = result.outcomes;
  const ok = served.filter((r) => r.ttftMs <= SLO.ttftMs && r.tpotMs <= SLO.tpotMs);
  return {
    ttftP50: percentile(served.map((r) => r.ttftMs), 50),
    ttftP99: percentile(served.map((r) => r.ttftMs), 99),
    tpotP99: percentile(served.map((r) => r.tpotMs), 99),
    attainment: ok.length / total,
    rejected: result.rejected / total,
    hit: result.promptTokens === 0 ? 0 : result.cachedTokens / result.promptTokens,
    goodput: ok.reduce((s, r) => s + r.outputTokens, 0) / SECONDS,
  };
}

const pct = (x: number, digits = 1): string => `${(x * 100).toFixed(digits)}%`;
const loadPct = (load: number): string => `${+(load * 100).toFixed(1)}%`;

const lines: string[] = [];
const out = (s = ''): void => {
  lines.push(s);
  process.stdout.write(s + '\n');
};

/** The highest load up to which every load tried keeps ≥ 99% within the SLO. */
function highestLoad(attainments: ReadonlyMap<number, number>, loads: readonly number[]): string {
  let best: number | undefined;
  for (const load of loads) {
    if ((attainments.get(load) ?? 0) < 0.99) break;
    best = load;
  }
  return best === undefined ? `below ${loadPct(loads[0] as number)}` : loadPct(best);
}

function independentRequests(): void {
  out(`**Workload 1: independent requests.** Poisson arrivals, lognormal prompts (median 500, σ 0.8) and outputs (median 200, σ 0.6).`);
  out();
  out('| policy | load | TTFT p50 ms | TTFT p99 ms | TPOT p99 ms | SLO attainment | rejected | goodput tok/s |');
  out('|---|---|---|---|---|---|---|---|');
  const attainment = new Map<string, Map<number, number>>();
  for (const make of independent) {
    for (const load of independentLoads) {
      const { name, summary: s } = run(make, poisson(load, CAPACITY, SECONDS, SEED));
      if (!attainment.has(name)) attainment.set(name, new Map());
      attainment.get(name)?.set(load, s.attainment);
      out(`| ${name} | ${loadPct(load)} | ${s.ttftP50.toFixed(0)} | ${s.ttftP99.toFixed(0)} | ${s.tpotP99.toFixed(0)} | ${pct(s.attainment)} | ${pct(s.rejected)} | ${s.goodput.toFixed(0)} |`);
    }
  }
  out();
  out(`| policy | ${independentLoads.map(loadPct).join(' | ')} | highest load with ≥ 99% SLO attainment |`);
  out(`|---|${independentLoads.map(() => '---|').join('')}---|`);
  for (const [name, byLoad] of attainment) {
    out(`| ${name} | ${independentLoads.map((l) => pct(byLoad.get(l) ?? 0)).join(' | ')} | ${highestLoad(byLoad, independentLoads)} |`);
  }
}

function prefixHeavy(): void {
  out(
    `**Workload 2: multi-turn conversations.** Conversations arrive as a Poisson process; 3–8 turns each; each turn's prompt is the conversation so far ` +
      `(its own system prompt, lognormal median 1,000, and every earlier message and answer) plus a new message (median 100); answers median 200; ` +
      `the next message follows the answer after an exponential think time (mean 5 s). Prefix cache per node: ${CACHE_SECONDS} s of its tokens/s, LRU by conversation. ` +
      `Load counts every prompt token as uncached (so 120% is past nominal only without cache hits). A rejected turn ends its conversation; its later turns count as not served.`,
  );
  out();
  out('| policy | load | TTFT p50 ms | TTFT p99 ms | TPOT p99 ms | SLO attainment | rejected | prefix-cache hit | goodput tok/s |');
  out('|---|---|---|---|---|---|---|---|---|');
  for (const load of conversationalLoads) {
    for (const make of conversational) {
      const { name, summary: s } = run(make, conversations(load, CAPACITY, SECONDS, SEED));
      out(`| ${name} | ${loadPct(load)} | ${s.ttftP50.toFixed(0)} | ${s.ttftP99.toFixed(0)} | ${s.tpotP99.toFixed(0)} | ${pct(s.attainment)} | ${pct(s.rejected)} | ${pct(s.hit)} | ${s.goodput.toFixed(0)} |`);
    }
  }
}

const started = Date.now();
out(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; ${SECONDS} s of arrivals simulated per point`);
out(
  `Fleet: ${FLEET.map((n) => `${n.id} ${n.tokensPerSecond} tok/s × ${n.maxSequences} seqs`).join(', ')} (nominal ${CAPACITY} tok/s). ` +
    `Decode ≤ ${PER_SEQUENCE_MAX_TPS} tok/s per sequence; a prompt token costs 1/${PREFILL_FACTOR} of an output token. ` +
    `SLO: TTFT ≤ ${SLO.ttftMs} ms and TPOT ≤ ${SLO.tpotMs} ms. Switchyard: expected-completion placement (horizon ${DEFAULT_PLACEMENT_OPTIONS.horizonSeconds} s, ` +
    `affinity slack ${DEFAULT_PLACEMENT_OPTIONS.affinitySlack}) and the fair admission queue, deadline ${DEADLINE_MS / 1000} s; the others place at once and queue inside the engine.`,
);
out();
independentRequests();
out();
prefixHeavy();
process.stderr.write(`${((Date.now() - started) / 1000).toFixed(1)} s\n`);
if (process.argv.includes('--write')) writeResults('scheduling', lines);
