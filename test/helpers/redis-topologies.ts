import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { closeRedis, connectRedis, redisEndpoint, type RedisClient, type RedisEndpoint, type RedisProfile } from '../../core/redis-connection.js';
import { REDIS_URL } from './services.js';
import { refusedPort } from './processes.js';

const run = promisify(execFile);

/**
 * Real Redis topologies for tests, started from Debian's redis-server on free loopback ports, with
 * no persistence: `server` (the machine's Redis at REDIS_URL), `cluster` (3 masters, optionally a
 * replica each, made with `redis-cli --cluster create`), `sentinel` (a master, a replica and three
 * sentinels), `tls` (one server on --tls-port with a CA made by openssl). Start each once per test
 * file: a cluster takes about 2 s, a Sentinel set about 1 s.
 */
export type TopologyName = 'server' | 'cluster' | 'sentinel';

export const TOPOLOGIES: readonly TopologyName[] = ['server', 'cluster', 'sentinel'];

export interface RedisServerProcess {
  readonly port: number;
  readonly process: ChildProcess;
  /** Stops the server (SIGKILL: a crash, nothing saved). */
  kill(): Promise<void>;
}

export interface StartedTopology {
  readonly name: TopologyName | 'tls';
  readonly endpoint: RedisEndpoint;
  /** Data-bearing servers by role (masters first); empty for `server`. */
  readonly servers: RedisServerProcess[];
  readonly sentinels: RedisServerProcess[];
  readonly dir: string | undefined;
  stop(): Promise<void>;
}

/** A port nobody listens on now, and whose cluster bus port (+10000) is free too (see refusedPort). */
export function freePort(): Promise<number> {
  return refusedPort([10_000]);
}

/** Starts one redis-server and resolves once it accepts connections. */
export async function startRedisServer(dir: string, port: number, extra: readonly string[] = []): Promise<RedisServerProcess> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', `dump-${port}.rdb`, ...extra];
  return spawnReady('redis-server', args, port, /Ready to accept connections/);
}

/** Every server this test process started: killed when it exits, even after a hook timed out. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

async function spawnReady(cmd: string, args: readonly string[], port: number, ready: RegExp): Promise<RedisServerProcess> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      if (ready.test(out)) {
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.resume();
    child.once('exit', (code) => reject(new Error(`${cmd} on ${port} exited (${String(code)}): ${out.slice(-500)}`)));
  });
  return {
    port,
    process: child,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    },
  };
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function ask<T>(port: number, f: (r: Redis) => Promise<T>, password?: string): Promise<T> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, ...(password === undefined ? {} : { password }) });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return await f(r);
  } finally {
    r.disconnect();
  }
}

/** A Redis Cluster of 3 masters (and `replicas` replicas each), every slot covered. */
export async function startCluster(replicas = 0): Promise<StartedTopology> {
  const dir = mkdtempSync(join(tmpdir(), 'sy-cluster-'));
  const ports = await distinctPorts(3 * (1 + replicas));
  const servers = await Promise.all(
    ports.map((p) => startRedisServer(dir, p, ['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${p}.conf`), '--cluster-node-timeout', '1000', '--cluster-replica-validity-factor', '0'])),
  );
  await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes']);
  await waitFor(async () => {
    for (const p of ports) if (!String(await ask(p, (r) => r.cluster('INFO'))).includes('cluster_state:ok')) return false;
    if (replicas > 0) {
      // Each replica attached and in sync with its master: a failover then has someone to promote.
      const nodes = String(await ask(ports[0] as number, (r) => r.cluster('NODES')));
      if ((nodes.match(/ slave /g) ?? []).length < 3 * replicas) return false;
    }
    return true;
  }, 'cluster_state:ok');
  const endpoint = redisEndpoint('redis://unused', { redisUrl: undefined, redisCluster: ports.slice(0, 3).map((p) => `127.0.0.1:${p}`).join(',') });
  return topology('cluster', endpoint, servers, [], dir);
}

/**
 * A master, one replica and three sentinels (quorum 2) watching them as `switchyard`; with
 * `password` the servers require it, with `sentinelPassword` the sentinels require theirs.
 */
export async function startSentinel(opts: { downAfterMs?: number; password?: string; sentinelPassword?: string } = {}): Promise<StartedTopology> {
  const dir = mkdtempSync(join(tmpdir(), 'sy-sentinel-'));
  const [pm, pr, ...ps] = await distinctPorts(5);
  const auth = opts.password === undefined ? [] : ['--requirepass', opts.password, '--masterauth', opts.password];
  const master = await startRedisServer(dir, pm as number, auth);
  const replica = await startRedisServer(dir, pr as number, ['--replicaof', '127.0.0.1', String(pm), ...auth]);
  await waitFor(async () => (await ask(pr as number, (r) => r.info('replication'), opts.password)).includes('master_link_status:up'), 'replica in sync');
  const sentinels = await Promise.all(
    ps.map((p) => {
      const conf = join(dir, `sentinel-${p}.conf`);
      writeFileSync(
        conf,
        [
          `port ${p}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor switchyard 127.0.0.1 ${pm} 2`,
          `sentinel down-after-milliseconds switchyard ${opts.downAfterMs ?? 1000}`,
          'sentinel failover-timeout switchyard 5000',
          'sentinel parallel-syncs switchyard 1',
          ...(opts.password === undefined ? [] : [`sentinel auth-pass switchyard ${opts.password}`]),
          ...(opts.sentinelPassword === undefined ? [] : [`requirepass ${opts.sentinelPassword}`]),
          '',
        ].join('\n'),
      );
      return spawnReady('redis-server', [conf, '--sentinel'], p as number, /\+monitor master/);
    }),
  );
  const endpoint = redisEndpoint('redis://unused', {
    redisUrl: undefined,
    redisSentinels: ps.map((p) => `127.0.0.1:${p}`).join(','),
    redisMaster: 'switchyard',
    redisPassword: opts.password,
    redisSentinelPassword: opts.sentinelPassword,
  });
  return topology('sentinel', endpoint, [master, replica], sentinels, dir);
}

/** Waits until every sentinel knows the other two (needed before they can agree on a failover). */
export async function sentinelsAcquainted(t: StartedTopology): Promise<void> {
  await waitFor(async () => {
    for (const s of t.sentinels) if ((await ask(s.port, (r) => r.call('SENTINEL', 'SENTINELS', 'switchyard') as Promise<unknown[]>)).length < t.sentinels.length - 1) return false;
    return true;
  }, 'sentinels to discover each other', 30_000);
}

/** The port the sentinels now name as master. */
export async function sentinelMaster(t: StartedTopology): Promise<number> {
  const s = t.sentinels[0] as RedisServerProcess;
  const addr = (await ask(s.port, (r) => r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'switchyard'))) as [string, string];
  return Number(addr[1]);
}

/** One TLS-only server with a fresh CA (openssl); `caFile` is what clients must trust. */
export async function startTls(): Promise<StartedTopology & { caFile: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'sy-tls-'));
  const f = (n: string): string => join(dir, n);
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '1', '-subj', '/CN=switchyard-test-ca']);
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost']);
  writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await run('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.crt'), '-days', '1', '-extfile', f('san.ext')]);
  const [port] = await distinctPorts(1);
  const server = await spawnReady(
    'redis-server',
    ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--tls-cert-file', f('server.crt'), '--tls-key-file', f('server.key'), '--tls-ca-cert-file', f('ca.crt'), '--tls-auth-clients', 'no'],
    port as number,
    /Ready to accept connections/,
  );
  const endpoint = redisEndpoint(`rediss://127.0.0.1:${port}`, { redisCaFile: f('ca.crt') });
  return { ...topology('tls', endpoint, [server], [], dir), caFile: f('ca.crt') };
}

async function distinctPorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort());
  return [...out];
}

function topology(name: StartedTopology['name'], endpoint: RedisEndpoint, servers: RedisServerProcess[], sentinels: RedisServerProcess[], dir: string | undefined): StartedTopology {
  return {
    name,
    endpoint,
    servers,
    sentinels,
    dir,
    async stop() {
      await Promise.all([...sentinels, ...servers].map((s) => s.kill()));
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startTopology(name: TopologyName): Promise<StartedTopology> {
  if (name === 'cluster') return startCluster();
  if (name === 'sentinel') return startSentinel();
  return topology('server', redisEndpoint(REDIS_URL), [], [], undefined);
}

/**
 * A test file's Redis on one topology: started by `start` (in beforeAll), connections by
 * `connect` (all closed by `stop`), keys under `prefix` deleted from the shared server on `stop`
 * (the started topologies are simply killed).
 */
export function topologyRedis(name: TopologyName, prefix: string): {
  start(): Promise<void>;
  connect(profile?: RedisProfile): RedisClient;
  endpoint(): RedisEndpoint;
  topology(): StartedTopology;
  stop(): Promise<void>;
} {
  let started: StartedTopology | undefined;
  const connections: RedisClient[] = [];
  const current = (): StartedTopology => {
    if (started === undefined) throw new Error(`redis topology ${name} not started (call start() in beforeAll)`);
    return started;
  };
  return {
    async start() {
      started ??= await startTopology(name);
    },
    // `queue` by default: tests wait for a connection that is still opening instead of failing.
    connect(profile: RedisProfile = 'queue') {
      const c = connectRedis(current().endpoint, `test-${name}`, undefined, profile);
      connections.push(c);
      return c;
    },
    endpoint: () => current().endpoint,
    topology: current,
    async stop() {
      if (name === 'server' && started !== undefined) {
        const r = new Redis(REDIS_URL);
        const keys = await r.keys(`${prefix}*`);
        if (keys.length > 0) await r.del(...keys);
        await r.quit();
      }
      await Promise.all(connections.map((c) => closeRedis(c)));
      await started?.stop();
      started = undefined;
    },
  };
}

export type TopologyHandle = ReturnType<typeof topologyRedis>;

/**
 * Every topology for one test file: `start` in beforeAll (all at once), `stop` in afterAll, and
 * `each` as `[name, handle]` rows for describe.each.
 */
export function redisBackends(prefix: string): { each: Array<[TopologyName, TopologyHandle]>; start(): Promise<void>; stop(): Promise<void> } {
  const each = TOPOLOGIES.map((t): [TopologyName, TopologyHandle] => [t, topologyRedis(t, prefix)]);
  return {
    each,
    start: async () => {
      await Promise.all(each.map(([, h]) => h.start()));
    },
    stop: async () => {
      await Promise.all(each.map(([, h]) => h.stop()));
    },
  };
}

/** Subscribers of a channel across the whole deployment (a Cluster counts them per node). */
export async function subscriberCount(client: RedisClient, channel: string): Promise<number> {
  const servers = 'nodes' in client && typeof client.nodes === 'function' ? client.nodes('all') : [client as Redis];
  let n = 0;
  for (const s of servers) n += Number(((await s.pubsub('NUMSUB', channel)) as unknown[])[1]);
  return n;
}
