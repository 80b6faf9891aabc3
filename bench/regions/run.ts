import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { BENCH_PG, CLI, dropBenchSchema, writeResults } from '../lib/fixture.js';
import { startNode, type Child } from '../lib/processes.js';
import { fmt, percentile } from '../lib/stats.js';
import { TcpProxy } from '../lib/tcp-proxy.js';

/**
 * Regions that stand alone, measured side by side in one run on one machine: two regions, each
 * with its own redis-server and gateway, one Postgres, a TCP proxy adding `RTT_MS` between them.
 * `node dist/bench/regions/run.js [--write] [--quick]` (needs redis-server on PATH and Postgres).
 *
 * 1. Latency of a local request (API keys, limits, ledger and usage in Redis) in three layouts:
 *    region-local Redis with the regions RTT_MS apart; the same with 0 ms between them (the
 *    target: within 1 ms of it); and today's single shared Redis, RTT_MS/2 away each way.
 * 2. Spill: a request served by the neighbour because the home region is full, against a request
 *    served locally by that neighbour.
 * 3. Limit precision: admitted / limit for a burst to both regions at once, and for steady load
 *    on the region that is not the key budget's home.
 */
const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
const args = new Set(process.argv.slice(2));
const N = args.has('--quick') ? 100 : 400;
const RTT_MS = 40;
const ADMIN = 'bench-admin';
const TOKEN = 'bench-region-token';
const run = `bench_regions_${Date.now().toString(36)}`;
const lines: string[] = [];
const out = (s = ''): void => {
  lines.push(s);
  process.stdout.write(s + '\n');
};
const cleanups: Array<() => Promise<unknown>> = [];

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  server.close();
  await once(server, 'close');
  return port;
}

async function redisServer(): Promise<{ url: string; port: number }> {
  const port = await freePort();
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (c: Buffer) => c.toString().includes('Ready to accept') && resolve());
    child.once('exit', () => reject(new Error('redis-server exited')));
  });
  cleanups.push(async () => {
    child.kill('SIGKILL');
    await once(child, 'exit').catch(() => undefined);
  });
  return { url: `redis://127.0.0.1:${port}`, port };
}

async function proxy(port: number, delayMs: number): Promise<TcpProxy> {
  const p = new TcpProxy('127.0.0.1', port, delayMs);
  await p.start();
  cleanups.push(() => p.stop());
  return p;
}

async function child(promise: Promise<Child>): Promise<Child> {
  const c = await promise;
  cleanups.push(() => c.stop());
  return c;
}

interface Layout {
  readonly west: Child;
  readonly north: Child;
  readonly key: string;
}

/**
 * Two standalone regions, `rtt` ms apart, each region's node a canned upstream (answers at once).
 * `sharedRedis`: today's layout instead — no region stands alone, both use one Redis, which north
 * reaches through a proxy `rtt/2` each way.
 */
async function layout(name: string, rtt: number, sharedRedis: boolean, upstreams: { west: string; north: string }, northCapacity = 4096): Promise<Layout> {
  const [westPort, northPort] = [await freePort(), await freePort()];
  const [toWest, toNorth] = [await proxy(westPort, rtt / 2), await proxy(northPort, rtt / 2)];
  const redisWest = await redisServer();
  const redisNorth = sharedRedis ? undefined : await redisServer();
  const farRedis = sharedRedis ? await proxy(redisWest.port, rtt / 2) : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-regions-'));
  const yaml = `regions:
  - id: west
    residency: eu
${sharedRedis ? '' : `    gateway: http://127.0.0.1:${toWest.port}\n`}    clusters:
      - id: west-a
        nodes:
          - { id: w1, url: '${upstreams.west}', engine: vllm, models: [bench], capacity: { tokensPerSecond: 1000000, maxSequences: 4096 } }
  - id: north
    residency: eu
${sharedRedis ? '' : `    gateway: http://127.0.0.1:${toNorth.port}\n`}    clusters:
      - id: north-a
        nodes:
          - { id: n1, url: '${upstreams.north}', engine: vllm, models: [bench], capacity: { tokensPerSecond: 1000000, maxSequences: ${northCapacity} } }
distances:
  - { between: [west, north], rttMs: ${rtt} }
`;
  writeFileSync(join(dir, 'regions.yaml'), yaml);
  const schema = `${run}_${name}`;
  cleanups.push(() => dropBenchSchema(schema));
  const env = (region: 'west' | 'north', redisUrl: string): NodeJS.ProcessEnv => ({
    DATABASE_URL: BENCH_PG, SWITCHYARD_DATABASE_SCHEMA: schema, SWITCHYARD_DATA_DIR: dir, REDIS_URL: redisUrl, SWITCHYARD_REGION: region,
    SWITCHYARD_REGION_TOKEN: TOKEN, SWITCHYARD_ADMIN_TOKEN: ADMIN, SWITCHYARD_AUTH: 'keys', SWITCHYARD_LOG_LEVEL: 'warn', SWITCHYARD_LOG_FORMAT: 'json',
  });
  const config = join(dir, 'regions.yaml');
  // `gateway listening` is logged at info: these two start at info, the rest of the run is quiet.
  const west = await child(startNode(CLI, ['gateway', '--config', config, '--port', String(westPort)], 'gateway listening', { ...env('west', redisWest.url), SWITCHYARD_LOG_LEVEL: 'info' }));
  const northRedis = redisNorth?.url ?? `redis://127.0.0.1:${farRedis?.port ?? 0}`;
  const north = await child(startNode(CLI, ['gateway', '--config', config, '--port', String(northPort)], 'gateway listening', { ...env('north', northRedis), SWITCHYARD_LOG_LEVEL: 'info' }));
  const res = await fetch(`${west.url}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant: 'bench', name: name, limits: { requestsPerMinute: 100_000_000, tokensPerMinute: 2_000_000_000, maxConcurrent: 100_000 } }),
  });
  const { key } = (await res.json()) as { key: string };
  // Both gateways see each other's summaries before anything is measured.
  for (const gw of sharedRedis ? [] : [west, north]) {
    for (let i = 0; i < 100; i++) {
      if (/switchyard_region_peer_up\{region="\w+"\} 1/.test(await (await fetch(`${gw.url}/metrics`)).text())) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { west, north, key };
}

const body = JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'How far is the other region?' }], max_tokens: 8 });

/** Sequential requests, one pool per target; ms to the whole body. */
async function latencies(url: string, key: string, n: number, headers: Record<string, string> = {}): Promise<{ ms: number[]; regions: Map<string, number> }> {
  const pool = new Pool(url, { connections: 4 });
  const ms: number[] = [];
  const regions = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers }, body });
    await res.body.text();
    if (res.statusCode !== 200) throw new Error(`${url} answered ${res.statusCode}`);
    ms.push(performance.now() - t0);
    const region = String(res.headers['x-switchyard-region']);
    regions.set(region, (regions.get(region) ?? 0) + 1);
  }
  await pool.close();
  return { ms, regions };
}

async function newKey(url: string, rpm: number): Promise<string> {
  const res = await fetch(`${url}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant: 'bench', name: `limit-${rpm}`, limits: { requestsPerMinute: rpm, tokensPerMinute: 0, maxConcurrent: 0 } }),
  });
  return ((await res.json()) as { key: string }).key;
}

async function attempt(pool: Pool, key: string): Promise<{ ok: boolean; retryMs: number }> {
  const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body });
  await res.body.text();
  return { ok: res.statusCode === 200, retryMs: Number(res.headers['retry-after-ms'] ?? 250) };
}

try {
  const upstream = await child(startNode(here('../overhead/canned-upstream.js'), [], 'upstream listening'));
  out(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; ${N} sequential requests per row, interleaved layouts`);
  out();
  out(`### Local requests: region-local Redis vs one shared Redis (${RTT_MS} ms between regions; ms to the whole response)`);
  out();
  out('| layout | p50 | p90 | p99 | served by | vs region-local at 0 ms (p50) |');
  out('|---|---|---|---|---|---|');
  const same = { west: upstream.url, north: upstream.url };
  const local40 = await layout('local40', RTT_MS, false, same);
  const local0 = await layout('local0', 0, false, same);
  const shared40 = await layout('shared40', RTT_MS, true, same);
  // Warm-up, then interleaved rounds so drift hits every layout alike.
  for (const l of [local40, local0, shared40]) await latencies(l.north.url, l.key, 100);
  const rows: Array<[string, Layout]> = [
    [`region-local Redis, regions ${RTT_MS} ms apart`, local40],
    ['region-local Redis, regions 0 ms apart', local0],
    [`one shared Redis, ${RTT_MS} ms away (today's layout)`, shared40],
  ];
  const samples = new Map<string, { ms: number[]; regions: Map<string, number> }>(rows.map(([n]) => [n, { ms: [], regions: new Map() }]));
  for (let round = 0; round < 4; round++) {
    for (const [name, l] of rows) {
      const r = await latencies(l.north.url, l.key, N / 4);
      const s = samples.get(name);
      s?.ms.push(...r.ms);
      for (const [k, v] of r.regions) s?.regions.set(k, (s.regions.get(k) ?? 0) + v);
    }
  }
  const base = percentile(samples.get('region-local Redis, regions 0 ms apart')?.ms ?? [], 50);
  for (const [name] of rows) {
    const s = samples.get(name);
    const ms = s?.ms ?? [];
    const served = [...(s?.regions ?? new Map())].map(([k, v]) => `${k} ${v}`).join(', ');
    out(`| ${name} | ${fmt(percentile(ms, 50))} | ${fmt(percentile(ms, 90))} | ${fmt(percentile(ms, 99))} | ${served} | ${percentile(ms, 50) - base >= 0 ? '+' : ''}${fmt(percentile(ms, 50) - base)} |`);
  }
  for (const l of [local0, shared40]) {
    await l.west.stop();
    await l.north.stop();
  }

  out();
  out(`### Spill: west full, requests forwarded to north (${RTT_MS} ms away) vs the same requests sent to north directly (ms)`);
  out();
  out('| path | p50 | p90 | p99 | served by |');
  out('|---|---|---|---|---|');
  // West's node has no capacity at all (a held sequence would be the same): every request spills.
  const spillUpstream = await child(startNode(here('../overhead/canned-upstream.js'), [], 'upstream listening'));
  const spill = await layout('spill', RTT_MS, false, { west: 'http://127.0.0.1:1', north: spillUpstream.url });
  const viaWest = await latencies(spill.west.url, spill.key, N / 2);
  const direct = await latencies(spill.north.url, spill.key, N / 2);
  for (const [name, r] of [['client → west → north (spilled)', viaWest], ['client → north (local there)', direct]] as const) {
    out(`| ${name} | ${fmt(percentile(r.ms, 50))} | ${fmt(percentile(r.ms, 90))} | ${fmt(percentile(r.ms, 99))} | ${[...r.regions].map(([k, v]) => `${k} ${v}`).join(', ')} |`);
  }

  out();
  out('### Limit precision across regions (requests/min limits; west is the limits home, north leases slices)');
  out();
  out('| load | limit | admitted | admitted / limit | bound |');
  out('|---|---|---|---|---|');
  const westPool = new Pool(local40.west.url, { connections: 64 });
  const northPool = new Pool(local40.north.url, { connections: 64 });
  for (const limit of [20, 200]) {
    const key = await newKey(local40.west.url, limit);
    const t0 = performance.now();
    const shots = await Promise.all([
      ...Array.from({ length: limit }, () => attempt(westPool, key)),
      ...Array.from({ length: limit }, () => attempt(northPool, key)),
    ]);
    const refilled = (limit * (performance.now() - t0)) / 60_000;
    const admitted = shots.filter((s) => s.ok).length;
    out(`| burst: ${limit} at once to each of 2 regions (${((performance.now() - t0) / 1000).toFixed(2)} s) | ${limit} (+ ${refilled.toFixed(1)} refilled) | ${admitted} | ${(admitted / limit).toFixed(3)} | ≤ ${(limit + refilled + 1).toFixed(1)} (limit + refill + 1 for north) |`);
  }
  for (const limit of [60, 600]) {
    const key = await newKey(local40.west.url, limit);
    let admitted = 0;
    let sent = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (sent++ < 2 * limit) {
        const r = await attempt(northPool, key);
        if (r.ok) admitted++;
        else await new Promise((res) => setTimeout(res, r.retryMs));
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    const budget = limit + (limit * seconds) / 60;
    out(`| steady: 4 clients on north only, ${2 * limit} attempts in ${seconds.toFixed(1)} s (clients wait retry-after-ms) | ${limit} (+ ${((limit * seconds) / 60).toFixed(1)} refilled) | ${admitted} | ${(admitted / budget).toFixed(3)} | ≥ 0.9 |`);
  }
  await westPool.close();
  await northPool.close();
  if (args.has('--write')) {
    const path = writeResults('regions', lines);
    process.stdout.write(`\nwritten to ${path}\n`);
  }
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
}
