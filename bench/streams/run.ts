import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { CLI, dropBenchSchema, startBenchGateway, writeResults } from '../lib/fixture.js';
import { startNode, type Child } from '../lib/processes.js';
import { streamFidelity } from '../overhead/stream-fidelity.js';

/**
 * Many concurrent streams through one gateway process to a real `switchyard sim`: every stream
 * chunk-exact (one event per generated token, none merged, the sim's own text), and the gateway's
 * memory per open stream: resident set size and V8 heap in use (from its /metrics) when the most
 * streams were open at once, minus the same with none open.
 * `npm run bench:streams -- [--streams 9000] [--tokens 24] [--write]`
 *
 * Each stream holds two sockets in the gateway (client and engine), so a process needs two file
 * descriptors per stream: the open-files limit (`ulimit -n`) bounds how many one process can hold.
 */
const { values } = parseArgs({ options: { streams: { type: 'string', default: '9000' }, tokens: { type: 'string', default: '32' }, write: { type: 'boolean', default: false } } });
const STREAMS = Number(values.streams);
const TOKENS = Number(values.tokens);
const SCHEMA = `bench_${Date.now().toString(36)}`;

const rssBytes = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
async function heapUsed(url: string): Promise<number> {
  const res = await request(`${url}/metrics`);
  const text = await res.body.text();
  return Number(/^switchyard_nodejs_heap_size_used_bytes (\S+)/m.exec(text)?.[1] ?? NaN);
}
const mib = (b: number): string => (b / 1024 / 1024).toFixed(1);

const children: Child[] = [];
const lines: string[] = [];
const out = (s = ''): void => {
  lines.push(s);
  process.stdout.write(s + '\n');
};
try {
  // 1 token/s per stream (an engine step bounds a sequence's speed): each lasts tens of seconds,
  // so the streams are open together once all have started. The expected answers come from a twin
  // sim (same seed, same text) without that bound.
  const sim = await startNode(CLI, ['sim', '--port', '0', '--max-seqs', String(STREAMS), '--tokens-per-second', String(STREAMS), '--seq-tokens-per-second', '1', '--ttft-ms', '5', '--models', 'sim-small'], 'sim listening');
  children.push(sim);
  const twin = await startNode(CLI, ['sim', '--port', '0', '--tokens-per-second', '100000', '--ttft-ms', '0', '--models', 'sim-small'], 'sim listening');
  children.push(twin);
  const gateway = await startBenchGateway(sim.url, 'sim-small', SCHEMA, {}, [], CLI, STREAMS);
  children.push(gateway);
  const pid = gateway.proc.pid as number;
  await streamFidelity(gateway.url, sim.url, 200, 2, undefined, twin.url); // warm-up
  await new Promise((r) => setTimeout(r, 1000));
  global.gc?.();
  const idle = { rss: rssBytes(pid), heap: await heapUsed(gateway.url) };
  let open = 0;
  // RSS is read from /proc at every sample (cheap, synchronous); the heap comes from /metrics,
  // scraped one after another, each paired with the streams open when it was asked for.
  let peak = { open: 0, rss: 0 };
  let heapPeak = { open: 0, heap: 0 };
  const sampler = setInterval(() => {
    if (open > peak.open) peak = { open, rss: rssBytes(pid) };
  }, 20);
  let scraping = true;
  const scraper = (async () => {
    while (scraping) {
      const at = open;
      const heap = await heapUsed(gateway.url).catch(() => NaN);
      if (at > heapPeak.open && Number.isFinite(heap)) heapPeak = { open: at, heap };
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const f = await streamFidelity(gateway.url, sim.url, STREAMS, TOKENS, (d) => (open += d), twin.url);
  clearInterval(sampler);
  scraping = false;
  await scraper;
  out(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}`);
  out();
  out(`### ${f.streams} concurrent streams × ${TOKENS} tokens through one gateway process to a real \`switchyard sim\``);
  out();
  out('| streams | correct | lost events | merged events | wrong text | failed | seconds | most open at once |');
  out('|---|---|---|---|---|---|---|---|');
  out(`| ${f.streams} | ${f.ok} | ${f.lost} | ${f.merged} | ${f.wrongText} | ${f.failed} | ${f.seconds.toFixed(2)} | ${peak.open} |`);
  if (f.failed > 0) out(`\nFailures: ${[...f.failures].map(([why, n]) => `${why} × ${n}`).join(', ')}`);
  out();
  out(`| gateway memory | no stream open | most streams open (${peak.open}) | per open stream |`);
  out('|---|---|---|---|');
  out(`| resident set (RSS) | ${mib(idle.rss)} MiB | ${mib(peak.rss)} MiB | ${((peak.rss - idle.rss) / Math.max(1, peak.open) / 1024).toFixed(1)} KiB |`);
  out(`| V8 heap in use (at ${heapPeak.open} open) | ${mib(idle.heap)} MiB | ${mib(heapPeak.heap)} MiB | ${((heapPeak.heap - idle.heap) / Math.max(1, heapPeak.open) / 1024).toFixed(1)} KiB |`);
} finally {
  await Promise.all(children.map((c) => c.stop()));
  await dropBenchSchema(SCHEMA);
}
if (values.write) process.stdout.write(`\nwritten to ${writeResults('streams', lines)}\n`);
