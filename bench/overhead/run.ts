import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { interleaved, openLoop, shoot, target, type Shot } from '../lib/load.js';
import { rotatingClosedLoops } from '../lib/ladder.js';
import { CLI, dropBenchSchema, startBenchGateway, writeResults } from '../lib/fixture.js';
import { startNode, type Child } from '../lib/processes.js';
import { fmt, percentile } from '../lib/stats.js';
import { streamFidelity } from './stream-fidelity.js';

/**
 * Gateway overhead, side by side in one run: the same requests sent straight to an upstream,
 * through a bare Fastify+undici passthrough (the anchor), and through the Switchyard gateway.
 * `npm run bench [-- --write]` (--write puts the results into docs/benchmarks.md).
 */
const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
const SCHEMA = `bench_${Date.now().toString(36)}`;
const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const N_SEQ = quick ? 500 : 3000;
const SECONDS = quick ? 2 : 5;
const RATE = 1000;
const STREAMS = quick ? 500 : 2000;

const chat: Shot = {
  path: '/v1/chat/completions',
  body: JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'How much latency does the gateway add?' }], max_tokens: 8 }),
};
const chatStream: Shot = { path: chat.path, body: JSON.stringify({ ...JSON.parse(chat.body), stream: true }) };

const lines: string[] = [];
const out = (s = ''): void => {
  lines.push(s);
  process.stdout.write(s + '\n');
};

const children: Child[] = [];
try {
  const upstream = await startNode(here('./canned-upstream.js'), [], 'upstream listening');
  children.push(upstream);
  const passthrough = await startNode(here('./passthrough.js'), [upstream.url], 'passthrough listening');
  children.push(passthrough);
  const gateway = await startBenchGateway(upstream.url, 'bench', SCHEMA);
  children.push(gateway);
  const targets = [target('direct', upstream.url), target('passthrough', passthrough.url), target('gateway', gateway.url)];
  const [direct, pass, gw] = targets as [ReturnType<typeof target>, ReturnType<typeof target>, ReturnType<typeof target>];

  out(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}`);
  out();
  await interleaved(targets, chat, 300); // warm-up: JIT, keep-alive connections

  const seq = await interleaved(targets, chat, N_SEQ);
  const base = seq.get('direct') as number[];
  out(`### Concurrency 1, ${N_SEQ} requests per target, interleaved (ms)`);
  out();
  out('| target | p50 | p99 | added p50 | added p99 |');
  out('|---|---|---|---|---|');
  for (const t of targets) {
    const s = seq.get(t.name) as number[];
    const added = t.name === 'direct' ? ['', ''] : [fmt(percentile(s, 50) - percentile(base, 50)), fmt(percentile(s, 99) - percentile(base, 99))];
    out(`| ${t.name} | ${fmt(percentile(s, 50))} | ${fmt(percentile(s, 99))} | ${added[0]} | ${added[1]} |`);
  }
  out();

  out(`### Open loop, ${RATE} requests/s for ${SECONDS} s (ms from the scheduled send time)`);
  out();
  out('| target | p50 | p99 | max | errors |');
  out('|---|---|---|---|---|');
  for (const t of [direct, pass, gw]) {
    const r = await openLoop(t, chat, RATE, SECONDS);
    out(`| ${t.name} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.max)} | ${r.errors}/${r.sent} |`);
  }
  out();

  out(`### Maximum throughput, closed loop, 64 concurrent, ${SECONDS} s per target in 0.5 s slices taken in turn`);
  out();
  out('| target | requests/s | errors | proxy CPU µs/request |');
  out('|---|---|---|---|');
  const loops = [[direct, undefined], [pass, passthrough], [gw, gateway]] as const;
  const results = await rotatingClosedLoops(
    loops.map(([t, proc]) => ({ call: async () => (await shoot(t, chat)).ok, pid: proc?.proc.pid })),
    SECONDS,
  );
  const closed = new Map<string, { rps: number; cpuUs: number }>();
  loops.forEach(([t, proc], i) => {
    const r = results[i] as { rps: number; errors: number; cpuUs: number };
    closed.set(t.name, r);
    out(`| ${t.name} | ${r.rps.toFixed(0)} | ${r.errors} | ${proc ? fmt(r.cpuUs, 0) : ''} |`);
  });
  out();
  {
    // Issue 14's targets for the gateway without auth, from this run.
    const s = seq.get('gateway') as number[];
    const p = seq.get('passthrough') as number[];
    const addedP50 = percentile(s, 50) - percentile(p, 50);
    const g = closed.get('gateway') as { rps: number; cpuUs: number };
    const a = closed.get('passthrough') as { rps: number; cpuUs: number };
    out('Against issue 14 (gateway without auth vs the passthrough, this run):');
    out();
    out('| target | measured | met? |');
    out('|---|---|---|');
    out(`| added p50 at concurrency 1 ≤ 0.15 ms over the passthrough's | ${fmt(addedP50)} ms | ${addedP50 <= 0.15 ? 'yes' : 'no'} |`);
    out(`| throughput ≥ 80% of the passthrough's | ${((g.rps / a.rps) * 100).toFixed(0)}% | ${g.rps / a.rps >= 0.8 ? 'yes' : 'no'} |`);
    out(`| CPU per request ≤ 1.4× the passthrough's | ${(g.cpuUs / a.cpuUs).toFixed(2)}× | ${g.cpuUs / a.cpuUs <= 1.4 ? 'yes' : 'no'} |`);
    out();
  }

  const ttft = await interleaved([direct, gw], chatStream, quick ? 300 : 2000, true);
  const d = ttft.get('direct') as number[];
  const g = ttft.get('gateway') as number[];
  out('### Streaming, concurrency 1: time to first byte of the body (ms)');
  out();
  out('| target | p50 | p99 | added p50 | added p99 |');
  out('|---|---|---|---|---|');
  out(`| direct | ${fmt(percentile(d, 50))} | ${fmt(percentile(d, 99))} | | |`);
  out(`| gateway | ${fmt(percentile(g, 50))} | ${fmt(percentile(g, 99))} | ${fmt(percentile(g, 50) - percentile(d, 50))} | ${fmt(percentile(g, 99) - percentile(d, 99))} |`);
  out();
  await Promise.all(targets.map((t) => t.pool.close()));

  const sim = await startNode(CLI, ['sim', '--port', '0', '--max-seqs', String(STREAMS), '--tokens-per-second', '200000', '--ttft-ms', '5', '--models', 'sim-small'], 'sim listening');
  children.push(sim);
  const simGateway = await startBenchGateway(sim.url, 'sim-small', SCHEMA);
  children.push(simGateway);
  const f = await streamFidelity(simGateway.url, sim.url, STREAMS, 24);
  out(`### Chunk fidelity: ${f.streams} concurrent streams × 24 tokens through the gateway to a real \`switchyard sim\``);
  out();
  out('| streams | correct | lost events | merged events | wrong text | failed | seconds |');
  out('|---|---|---|---|---|---|---|');
  out(`| ${f.streams} | ${f.ok} | ${f.lost} | ${f.merged} | ${f.wrongText} | ${f.failed} | ${f.seconds.toFixed(2)} |`);
} finally {
  await Promise.all(children.map((c) => c.stop()));
  await dropBenchSchema(SCHEMA);
}

if (args.has('--write')) process.stdout.write(`\nwritten to ${writeResults('overhead', lines)}\n`);
