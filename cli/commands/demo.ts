import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { parseDocument } from 'yaml';
import { loadRegionsFile } from '../../core/config/load-regions.js';
import type { NodeSpec } from '../../core/config/topology.js';
import { describeRedis, redisConfigured } from '../../core/redis-connection.js';
import { AdminClient } from '../admin-client.js';
import { settingsFromArgv, UsageError, waitForSignal } from '../run-command.js';

const CLI = fileURLToPath(new URL('../main.js', import.meta.url));
/** Tried when DATABASE_URL is unset: the local Postgres a development machine usually has. */
const LOCAL_POSTGRES = 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * `switchyard demo`: the layout docker/compose.yaml starts, as local processes. Every
 * `engine: sim` node of regions.yaml becomes a `switchyard sim` process, registered through the
 * admin API (a join token each, as compose's register service does) and joined by its own
 * `switchyard agent`, which reports the sim's engine load and simulated GPUs (its DCGM page) to
 * one `switchyard scheduler` over gRPC; every region gets a `switchyard gateway` (the first on
 * --port, default 8080, then the following ports) and a `switchyard worker`.
 *
 * Separate processes share state the way a deployment does. Without REDIS_URL every region gets
 * a private `redis-server` of its own and stands alone (its own scheduler; regions spill to each
 * other by forwarding and lease key limits from the first region, docs/multi-region.md); with
 * REDIS_URL every region shares it. Postgres is shared: DATABASE_URL, else the local one on 5432
 * in a `switchyard_demo` schema. Without SWITCHYARD_ADMIN_TOKEN one is made and printed. Ctrl-C
 * stops everything it started, Redis last.
 */
export async function demoCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  const topology = await loadRegionsFile(settings.configPath);
  const simNodes = topology.nodes.filter((n) => n.sim !== undefined);
  if (simNodes.length === 0) throw new UsageError(`${settings.configPath} declares no engine: sim nodes to run`);
  const demoDir = resolve(settings.dataDir, 'demo');
  mkdirSync(demoDir, { recursive: true });
  const children: ChildProcess[] = [];
  const stopAll = async (): Promise<void> => {
    // Reverse start order: agents, gateways and workers before the scheduler, sims and Redis last.
    // Ctrl-C in a terminal signals the whole process group at once; Redis runs in its own group
    // so that it outlives the processes that still need it to shut down.
    for (const child of [...children].reverse()) await stop(child);
  };
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, SWITCHYARD_LOG_FORMAT: 'json' };
    const adminToken = settings.adminToken ?? `demo-${randomBytes(12).toString('base64url')}`;
    env['SWITCHYARD_ADMIN_TOKEN'] = adminToken;
    const regions = [...topology.regions.values()];
    const gatewayPort = new Map(regions.map((r, i) => [r.id, settings.port + i]));
    // Without REDIS_URL every region gets a redis-server of its own and stands alone, as in
    // production (docs/multi-region.md): spill between regions by forwarding, limits leased from
    // the first region. With REDIS_URL, every region shares it.
    const standalone = !redisConfigured(settings);
    const regionEnv = new Map<string, NodeJS.ProcessEnv>();
    let redisNote: string;
    if (standalone) {
      env['SWITCHYARD_REGION_TOKEN'] = settings.regionToken ?? `demo-region-${randomBytes(12).toString('base64url')}`;
      const ports: string[] = [];
      for (const region of regions) {
        const redis = await startRedis(join(demoDir, `redis-${region.id}`), children);
        regionEnv.set(region.id, { ...env, REDIS_URL: redis.url, SWITCHYARD_REGION: region.id });
        ports.push(`${region.id} :${redis.port}`);
      }
      redisNote = `A private redis-server per region (${ports.join(', ')})`;
    } else {
      for (const region of regions) regionEnv.set(region.id, { ...env, SWITCHYARD_REGION: region.id });
      redisNote = `Redis: ${describeRedis(settings)}, shared by every region`;
    }
    const envOf = (region: string): NodeJS.ProcessEnv => regionEnv.get(region) ?? env;
    const postgresNote = await sharePostgres(env, settings.databaseUrl);
    for (const e of regionEnv.values()) Object.assign(e, { DATABASE_URL: env['DATABASE_URL'], SWITCHYARD_DATABASE_SCHEMA: env['SWITCHYARD_DATABASE_SCHEMA'] });
    // The processes read regions.yaml without the sim nodes (those are registered) and, with a
    // Redis per region, with each region's gateway address.
    const config = join(demoDir, 'regions.yaml');
    writeFileSync(config, await demoRegions(settings.configPath, standalone ? (id) => `http://${settings.host}:${gatewayPort.get(id) ?? 0}` : undefined));

    for (const node of simNodes) {
      const url = new URL(node.origin);
      const args = ['sim', '--host', url.hostname, '--port', url.port || '80', '--models', node.models.join(','),
        '--tokens-per-second', String(node.tokensPerSecond), '--max-seqs', String(node.maxSequences),
        '--ttft-ms', String(node.sim?.ttftMs ?? 30), '--seed', String(node.sim?.seed ?? 0)];
      children.push((await spawnReady(args, 'sim listening', node.id, env)).child);
    }
    // One scheduler per Redis: it publishes its agents' reports to the gateways of its Redis.
    const schedulers = new Map<string, string>();
    const schedulerRegions = standalone ? regions : regions.slice(0, 1);
    for (const [i, region] of schedulerRegions.entries()) {
      const scheduler = await spawnReady(['scheduler', '--config', config, '--host', '127.0.0.1', '--port', String(await freePort()),
        '--scheduler-port', String(settings.schedulerPort + i)], 'scheduler listening', standalone ? `scheduler ${region.id}` : 'scheduler', envOf(region.id));
      children.push(scheduler.child);
      schedulers.set(region.id, scheduler.url);
    }
    const schedulerOf = (region: string): string => schedulers.get(region) ?? [...schedulers.values()][0] ?? '';
    // Workers before gateways, so no gateway starts with its region's background queue unserved.
    for (const region of regions) {
      const args = ['worker', '--config', config, '--region', region.id, '--host', '127.0.0.1', '--port', String(await freePort())];
      children.push((await spawnReady(args, 'worker running', `worker ${region.id}`, envOf(region.id))).child);
    }
    const gateways: string[] = [];
    for (const region of regions) {
      const port = gatewayPort.get(region.id) ?? settings.port;
      const args = ['gateway', '--config', config, '--host', settings.host, '--port', String(port), '--region', region.id];
      children.push((await spawnReady(args, 'gateway listening', `gateway ${region.id}`, envOf(region.id))).child);
      gateways.push(`  ${region.id.padEnd(12)} http://${settings.host}:${port}/v1`);
    }
    const first = `http://${settings.host}:${settings.port}`;
    const admin = new AdminClient(first, adminToken);
    for (const node of simNodes) {
      const token = await register(admin, node);
      const args = ['agent', '--scheduler', schedulerOf(node.regionId), '--node-id', node.id, '--join-token', token, '--engine-url', node.origin,
        '--dcgm-url', `${node.origin}/dcgm/metrics`, '--metrics-port', String(await freePort())];
      children.push((await spawnReady(args, 'agent running', `agent ${node.id}`, envOf(node.regionId))).child);
    }
    // Each region's gateway sees its own region's agents (with a Redis per region, only those).
    for (const region of regions) {
      const ids = simNodes.filter((n) => n.regionId === region.id).map((n) => n.id);
      if (ids.length > 0) await untilReporting(new AdminClient(`http://${settings.host}:${gatewayPort.get(region.id) ?? settings.port}`, adminToken), ids);
    }
    const model = simNodes[0]?.models[0] ?? 'sim-small';
    process.stdout.write(`
Switchyard demo is up: ${simNodes.length} simulated GPU nodes, each with an agent reporting to ${standalone ? 'its region\'s' : 'one'} scheduler,
${gateways.length} gateways and ${topology.regions.size} workers (one per region).
${redisNote}; ${postgresNote}.
${gateways.join('\n')}

Try it:
  curl -s ${first}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"${model}","messages":[{"role":"user","content":"Hello!"}],"max_tokens":16}'

  node --input-type=module -e "import OpenAI from 'openai';
    const client = new OpenAI({ baseURL: '${first}/v1', apiKey: 'unused' });
    const stream = await client.chat.completions.create({ model: '${model}', stream: true,
      messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 16 });
    for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
    console.log();"

The admin API and the CLI:
  export SWITCHYARD_ADMIN_TOKEN=${adminToken}
  npx switchyard nodes list
  npx switchyard keys create --tenant acme --name demo

Ctrl-C stops everything.
`);
    const exited = new Promise<string>((resolveExit) => {
      for (const child of children) child.once('exit', () => resolveExit('a child process exited'));
    });
    const reason = await Promise.race([waitForSignal(), exited]);
    process.stdout.write(`\nstopping (${reason})\n`);
  } finally {
    await stopAll();
  }
}

/** SIGTERM, and SIGKILL if the process has not exited within 15 s. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

/** Registers a sim node, always with a fresh token: its agent is started anew with every demo. */
async function register(admin: AdminClient, node: NodeSpec): Promise<string> {
  const registered = await admin.call<{ join_token: string | null }>('POST', '/nodes', {
    id: node.id, region: node.regionId, cluster: node.clusterId, url: node.origin, engine: 'vllm', models: node.models,
    capacity: { tokensPerSecond: node.tokensPerSecond, maxSequences: node.maxSequences }, rotate_token: true,
  });
  if (registered.join_token === null) throw new Error(`registering ${node.id} returned no join token`);
  return registered.join_token;
}

/** A private redis-server (no persistence) on a free port, stopped with the demo, last. */
async function startRedis(dir: string, children: ChildProcess[]): Promise<{ url: string; port: number }> {
  const binary = (process.env['PATH'] ?? '').split(delimiter).map((d) => join(d, 'redis-server')).find((p) => isExecutable(p));
  if (binary === undefined) {
    throw new UsageError('the demo runs separate processes that share Redis: set REDIS_URL, or install redis-server (`npm start` needs neither)');
  }
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  // detached: its own process group, so a terminal's Ctrl-C does not stop it before the others.
  const child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.unshift(child); // stopped after everything else
  // Not in our process group: if this process dies without stopping it, take it along.
  process.once('exit', () => child.kill('SIGKILL'));
  await new Promise<void>((ok, fail) => {
    child.stdout?.on('data', (c: Buffer) => {
      if (c.toString().includes('Ready to accept connections')) ok();
    });
    child.once('exit', (code) => fail(new Error(`redis-server exited with code ${code ?? 'null'}`)));
  });
  return { url: `redis://127.0.0.1:${port}`, port };
}

/** DATABASE_URL, else the local Postgres in its own schema; the processes must share one. */
async function sharePostgres(env: NodeJS.ProcessEnv, databaseUrl: string | undefined): Promise<string> {
  if (databaseUrl !== undefined) return `Postgres: ${redact(databaseUrl)}`;
  const client = new pg.Client({ connectionString: LOCAL_POSTGRES, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
  } catch {
    throw new UsageError(
      'the demo runs separate processes that share one Postgres (keys, nodes, usage): set DATABASE_URL, or run Postgres on 127.0.0.1:5432 (`npm start` needs neither: it embeds one)',
    );
  } finally {
    await client.end().catch(() => undefined);
  }
  env['DATABASE_URL'] = LOCAL_POSTGRES;
  env['SWITCHYARD_DATABASE_SCHEMA'] = env['SWITCHYARD_DATABASE_SCHEMA'] ?? 'switchyard_demo';
  return `Postgres: the local one, schema ${env['SWITCHYARD_DATABASE_SCHEMA']}`;
}

/** regions.yaml as the demo's processes read it: no sim nodes (they are registered), and each region's gateway when `gatewayOf` is given. */
async function demoRegions(path: string, gatewayOf: ((region: string) => string) | undefined): Promise<string> {
  const doc = parseDocument(await readFile(path, 'utf8'));
  const file = doc.toJS() as { regions: Array<{ id: string; gateway?: string; clusters?: Array<{ nodes?: Array<{ engine?: string }> }> }> };
  for (const region of file.regions) {
    for (const cluster of region.clusters ?? []) cluster.nodes = (cluster.nodes ?? []).filter((n) => n.engine !== 'sim');
    if (gatewayOf !== undefined) region.gateway = gatewayOf(region.id);
  }
  return `# Made by switchyard demo from ${path}: its sim nodes are registered through the admin API instead.\n${JSON.stringify(file, null, 2)}\n`;
}

/** Waits until the gateway has a fresh report from every node's agent (their first reports). */
async function untilReporting(admin: AdminClient, ids: readonly string[]): Promise<void> {
  for (let i = 0; i < 150; i++) {
    const list = await admin.call<{ data: Array<{ id: string; live: { fresh?: boolean } | null }> }>('GET', '/nodes').catch(() => undefined);
    const fresh = new Set(list?.data.filter((n) => n.live?.fresh === true).map((n) => n.id));
    if (ids.every((id) => fresh.has(id))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not every agent reported within 15 s (${ids.join(', ')})`);
}

/** A child's JSON warning as one short line: level, message, and the fields that say why. */
function readable(line: string): string {
  if (!line.startsWith('{')) return line;
  try {
    const { level, msg, err, role, nodeId } = JSON.parse(line) as { level?: number; msg?: string; err?: string; role?: string; nodeId?: string };
    const why = [nodeId, role, err].filter((x) => x !== undefined).join(', ');
    return `${(level ?? 0) >= 50 ? 'ERROR' : 'WARN'} ${msg ?? ''}${why === '' ? '' : ` (${why})`}`;
  } catch {
    return line;
  }
}

function isExecutable(path: string): boolean {
  try {
    return (statSync(path).mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

function redact(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//…@');
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  return typeof address === 'object' && address !== null ? address.port : 0;
}

/**
 * Starts `switchyard <args>` and resolves once it logs `readyMessage` (with the `url` that line
 * names); its warnings and errors are printed with a prefix.
 */
async function spawnReady(args: string[], readyMessage: string, label: string, env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = (line: string): string => `[${label}] ${line}\n`;
  let buffered = '';
  return new Promise((resolveReady, reject) => {
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.includes(`"msg":"${readyMessage}"`)) {
          const url = /"url":"([^"]+)"/.exec(line)?.[1] ?? '';
          resolveReady({ child, url });
        }
        if (/"level":(40|50|60)/.test(line) || !line.startsWith('{')) process.stdout.write(prefix(readable(line)));
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (c: Buffer) => process.stderr.write(prefix(c.toString('utf8').trimEnd())));
    child.once('exit', (code) => reject(new Error(`${label} exited with code ${code ?? 'null'} before it was ready`)));
  });
}
