import { readFileSync } from 'node:fs';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { Counter, Gauge } from 'prom-client';
import type { Logger } from './logger.js';
import type { Registry } from './metrics.js';

/** A connection to any supported Redis: one server (`redis://`, `rediss://`, Sentinel) or a Cluster. */
export type RedisClient = Redis | Cluster;

/**
 * Where Redis is (the settings of that name; see docs/redis.md). Exactly one of `redisUrl`,
 * `redisSentinels` (with `redisMaster`) or `redisCluster` names it; none: no Redis.
 */
export interface RedisEndpoint {
  /** `redis://` or `rediss://` (TLS) URL of one server. */
  readonly redisUrl: string | undefined;
  /** PEM CA bundle that TLS connections trust instead of the system's. */
  readonly redisCaFile: string | undefined;
  /** `host:port,…` of the sentinels (`rediss://host:port` entries: TLS to sentinels and servers). */
  readonly redisSentinels: string | undefined;
  /** The master name the sentinels monitor. */
  readonly redisMaster: string | undefined;
  /** Password of the Sentinel-managed or Cluster servers (a URL carries its own). */
  readonly redisPassword: string | undefined;
  /** Password of the sentinels themselves. */
  readonly redisSentinelPassword: string | undefined;
  /** `host:port,…` (or `redis[s]://…` URLs) of some Cluster nodes to discover the rest from. */
  readonly redisCluster: string | undefined;
}

/**
 * How a role's connection behaves while Redis is away. `state`: commands fail fast (no offline
 * queue, one retry, 1 s timeout), so the request path never waits on a dead Redis. `queue`:
 * commands wait and retry forever, as BullMQ requires, and so do the event log and subscribers.
 */
export type RedisProfile = 'state' | 'queue';

/** Where a component's connections go: the settings, or just a `redis[s]://` URL (tests, benchmarks, tools). */
export type RedisTarget = RedisEndpoint | string;

/** An endpoint with nothing but a URL (tests, benchmarks, tools). */
export function redisEndpoint(url: string, more: Partial<RedisEndpoint> = {}): RedisEndpoint {
  return { redisUrl: url, redisCaFile: undefined, redisSentinels: undefined, redisMaster: undefined, redisPassword: undefined, redisSentinelPassword: undefined, redisCluster: undefined, ...more };
}

/** Whether the settings name a Redis at all (else state stays in this process). */
export function redisConfigured(e: RedisEndpoint): boolean {
  return e.redisUrl !== undefined || e.redisSentinels !== undefined || e.redisCluster !== undefined;
}

/** Problems with the Redis settings, as `[setting, message]`; empty when they are usable. */
export function redisEndpointProblems(e: RedisEndpoint): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const named = [e.redisUrl, e.redisSentinels, e.redisCluster].filter((v) => v !== undefined).length;
  if (named > 1) out.push(['REDIS_URL', 'set only one of REDIS_URL, SWITCHYARD_REDIS_SENTINELS and SWITCHYARD_REDIS_CLUSTER']);
  if (e.redisSentinels !== undefined && e.redisMaster === undefined) out.push(['SWITCHYARD_REDIS_MASTER', 'required with SWITCHYARD_REDIS_SENTINELS (the master name the sentinels monitor)']);
  if (e.redisUrl !== undefined && !/^rediss?:\/\//.test(e.redisUrl)) out.push(['REDIS_URL', 'must start with redis:// or rediss://']);
  return out;
}

/** Human-readable, password-free description of where Redis is (for logs). */
export function describeRedis(e: RedisEndpoint): string {
  if (e.redisCluster !== undefined) return `cluster ${hosts(e.redisCluster).map((h) => `${h.host}:${h.port}`).join(',')}`;
  if (e.redisSentinels !== undefined) return `sentinel ${e.redisMaster ?? '?'}@${hosts(e.redisSentinels).map((h) => `${h.host}:${h.port}`).join(',')}`;
  if (e.redisUrl === undefined) return 'none';
  try {
    const u = new URL(e.redisUrl);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return 'redis';
  }
}

interface HostPort {
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  readonly username?: string;
  readonly password?: string;
}

/** `host:port`, `[v6]:port` or `redis[s]://[user:pass@]host:port` entries, comma-separated. */
function hosts(list: string): HostPort[] {
  return list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((entry) => {
      const u = new URL(/^rediss?:\/\//.test(entry) ? entry : `redis://${entry}`);
      const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
      return {
        host,
        port: u.port === '' ? 6379 : Number(u.port),
        tls: u.protocol === 'rediss:',
        ...(u.username === '' ? {} : { username: decodeURIComponent(u.username) }),
        ...(u.password === '' ? {} : { password: decodeURIComponent(u.password) }),
      };
    });
}

/** ioredis options without `replyMapping` (its constructors' overloads reject an explicit undefined). */
export type ServerOptions = Omit<RedisOptions, 'replyMapping'>;

const retryStrategy = (attempt: number): number => Math.min(2000, 50 * 2 ** Math.min(attempt, 6));

/** After a failover the old master answers writes with READONLY: reconnect (to the new one) and resend. */
const reconnectOnError = (err: Error): 2 | false => (err.message.startsWith('READONLY') ? 2 : false);

function profileOptions(profile: RedisProfile): ServerOptions {
  return profile === 'state'
    ? {
        enableOfflineQueue: false,
        // No auto-pipelining: the per-request calls are batched per event-loop turn by their
        // callers already (TickBatcher: one script per turn for admissions, settles, reservations,
        // releases), and ioredis's auto-pipeline costs more CPU per command than it saves then
        // (bench:features: about 6-9% of the production path's CPU per request).
        enableAutoPipelining: false,
        maxRetriesPerRequest: 1,
        commandTimeout: 1000,
        retryStrategy,
        reconnectOnError,
      }
    : { maxRetriesPerRequest: null, retryStrategy, reconnectOnError };
}

/** ioredis options for one server, a Sentinel set or a Cluster's nodes (without the host). */
export function redisOptionsFrom(e: RedisEndpoint, profile: RedisProfile): ServerOptions {
  const ca = e.redisCaFile === undefined ? undefined : readFileSync(e.redisCaFile);
  const tlsOptions = ca === undefined ? {} : { ca };
  const base = profileOptions(profile);
  if (e.redisSentinels !== undefined) {
    const sentinels = hosts(e.redisSentinels);
    const tls = sentinels.some((s) => s.tls);
    return {
      ...base,
      sentinels: sentinels.map((s) => ({ host: s.host, port: s.port })),
      name: e.redisMaster as string,
      role: 'master',
      // No failoverDetector: its sentinel subscriptions outlive quit() and keep a stopping process
      // alive. A dead master closes the connection (the reconnect asks the sentinels anew); a
      // demoted one answers READONLY (reconnectOnError).
      ...(e.redisPassword === undefined ? {} : { password: e.redisPassword }),
      ...(e.redisSentinelPassword === undefined ? {} : { sentinelPassword: e.redisSentinelPassword }),
      ...(tls ? { tls: tlsOptions, sentinelTLS: tlsOptions, enableTLSForSentinelMode: true } : {}),
      sentinelRetryStrategy: retryStrategy,
    };
  }
  if (e.redisUrl !== undefined && e.redisUrl.startsWith('rediss://')) return { ...base, tls: tlsOptions };
  return base;
}

/**
 * Opens a connection of one role (`state`, `bullmq-queue`, `event-log`, …) to wherever the
 * settings name, watched by watchRedis (an error listener, outage logs, per-role metrics).
 */
export function connectRedis(target: RedisTarget, role: string, log: Logger | undefined, profile: RedisProfile = 'state'): RedisClient {
  const e = typeof target === 'string' ? redisEndpoint(target) : target;
  const problems = redisEndpointProblems(e);
  if (problems.length > 0) throw new Error(problems.map(([k, m]) => `${k}: ${m}`).join('; '));
  let client: RedisClient;
  if (e.redisCluster !== undefined) {
    client = new Cluster(
      hosts(e.redisCluster).map((h) => ({ host: h.host, port: h.port })),
      clusterOptions(e, profile),
    );
  } else if (e.redisSentinels !== undefined) {
    client = new Redis(redisOptionsFrom(e, profile));
  } else if (e.redisUrl !== undefined) {
    client = new Redis(e.redisUrl, redisOptionsFrom(e, profile));
  } else {
    throw new Error('no Redis configured (REDIS_URL, SWITCHYARD_REDIS_SENTINELS or SWITCHYARD_REDIS_CLUSTER)');
  }
  watchRedis(client, role, log);
  return client;
}

function clusterOptions(e: RedisEndpoint, profile: RedisProfile): Omit<ClusterOptions, 'redisOptions'> & { redisOptions: Omit<NonNullable<ClusterOptions['redisOptions']>, 'replyMapping'> } {
  const seeds = hosts(e.redisCluster as string);
  const first = seeds[0];
  const { enableOfflineQueue, retryStrategy: _r, enableAutoPipelining, ...node } = profileOptions(profile);
  const password = e.redisPassword ?? first?.password;
  const username = first?.username;
  const tls = seeds.some((s) => s.tls);
  const ca = e.redisCaFile === undefined ? undefined : readFileSync(e.redisCaFile);
  return {
    ...(enableOfflineQueue === undefined ? {} : { enableOfflineQueue }),
    ...(enableAutoPipelining === undefined ? {} : { enableAutoPipelining }),
    clusterRetryStrategy: retryStrategy,
    // A failover moves slots: retry MOVED/TRYAGAIN/CLUSTERDOWN shortly instead of failing.
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    redisOptions: {
      ...node,
      ...(password === undefined ? {} : { password }),
      ...(username === undefined ? {} : { username }),
      ...(tls ? { tls: ca === undefined ? {} : { ca } } : {}),
    },
  };
}

/**
 * A second connection like `client` (same endpoint and options) for a subscriber or a blocking
 * command, which Redis requires on their own connections; `queue` profile: it waits out outages.
 */
export function duplicateRedis(client: RedisClient, role: string, log: Logger | undefined): RedisClient {
  const copy = client instanceof Cluster ? client.duplicate(undefined, { enableOfflineQueue: true }) : client.duplicate({ enableOfflineQueue: true });
  watchRedis(copy, role, log);
  return copy;
}

/** What re-emits a connection's errors: a BullMQ Queue, Worker or QueueEvents built on the client. */
export interface RedisErrorSource {
  on(event: 'error', listener: (err: Error) => void): unknown;
}

/** Errors that mean "Redis cannot be reached", as ioredis and BullMQ report them. */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
const CONNECTION_MESSAGES = /Connection is closed|Stream isn't writeable|connect ETIMEDOUT|ECONNREFUSED|ECONNRESET|CLUSTERDOWN|Failed to refresh slots cache|All sentinels are unreachable/;

/** Whether `err` says Redis could not be reached (rather than a bug or a refused command). */
export function isRedisUnavailable(err: unknown): boolean {
  // MOVED/ASK after the redirections ran out: a Cluster slot whose master died and whose replica
  // has not taken over yet.
  return err instanceof Error && (isConnectionError(err) || /enableOfflineQueue|READONLY|LOADING|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|^MOVED |^ASK |Too many Cluster redirections|Command timed out/.test(err.message));
}

function isConnectionError(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return (typeof code === 'string' && CONNECTION_CODES.has(code)) || err.name === 'MaxRetriesPerRequestError' || CONNECTION_MESSAGES.test(err.message);
}

/** Every watched connection of this process, by role, for the per-role metrics. */
const watched = new Map<RedisClient, string>();
const reconnects = new Map<string, number>();
/** Per connection: records the first error of an outage (logged once); set by the first watchRedis. */
const failures = new WeakMap<RedisClient, (err: Error) => void>();

/**
 * Gives a Redis connection of one role (`state`, `live-state-subscriber`, `bullmq-worker`, …) the
 * 'error' listener every connection needs: without one, ioredis prints "[ioredis] Unhandled error
 * event" and a stack trace on each failed reconnect, and BullMQ prints the error of a Queue or
 * Worker that has none. Connections reconnect by themselves; this only says so, once per outage:
 * `redis unreachable` (warn, the first error) when the role's connections start failing, and
 * `redis reachable again` (info) when `client` is ready again. The connection counts in
 * `switchyard_redis_connection_up{role}` and `switchyard_redis_reconnects_total{role}` until it
 * ends (registerRedisMetrics). Watching a connection again only adds `sources`.
 *
 * `sources` are the BullMQ objects built on `client`: their connection errors (the blocking
 * connections BullMQ opens itself) while `client` is not ready belong to the same outage; any
 * other error of theirs is logged as it comes. Without a logger (tests, benchmarks) errors are
 * only absorbed.
 */
export function watchRedis(client: RedisClient, role: string, log: Logger | undefined, ...sources: readonly RedisErrorSource[]): void {
  let failed = failures.get(client);
  if (failed === undefined) {
    let down = false;
    const onError = (err: Error): void => {
      if (!down) log?.warn({ role, err: err.message }, 'redis unreachable');
      down = true;
    };
    failed = onError;
    failures.set(client, onError);
    watched.set(client, role);
    client.on('error', onError);
    client.on('ready', () => {
      if (down) log?.info({ role }, 'redis reachable again');
      down = false;
    });
    client.on('reconnecting', () => reconnects.set(role, (reconnects.get(role) ?? 0) + 1));
    client.on('end', () => watched.delete(client));
  }
  const onError = failed;
  for (const source of sources) {
    source.on('error', (err: Error) => {
      if (client.status !== 'ready' && isConnectionError(err)) onError(err);
      else log?.warn({ role, err: err.message }, 'redis client error');
    });
  }
}

/**
 * Per-role connection metrics on a process's registry: `switchyard_redis_connection_up{role}` (1
 * while every connection of the role is ready) and `switchyard_redis_reconnects_total{role}`.
 * Idempotent per registry.
 */
export function registerRedisMetrics(registry: Registry): void {
  if (registry.getSingleMetric('switchyard_redis_connection_up') !== undefined) return;
  new Gauge({
    name: 'switchyard_redis_connection_up',
    help: "1 while every Redis connection of this process in the role is ready, 0 while one is not (connecting, reconnecting); roles without an open connection are absent.",
    labelNames: ['role'],
    registers: [registry],
    collect() {
      this.reset();
      const up = new Map<string, boolean>();
      for (const [client, role] of watched) up.set(role, (up.get(role) ?? true) && client.status === 'ready');
      for (const [role, ready] of up) this.set({ role }, ready ? 1 : 0);
    },
  });
  new Counter({
    name: 'switchyard_redis_reconnects_total',
    help: 'Reconnection attempts of this process\'s Redis connections, by role.',
    labelNames: ['role'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [role, n] of reconnects) this.inc({ role }, n);
    },
  });
}

/**
 * Closes a connection: QUIT when it is connected (pending replies arrive first), else at once.
 * QUIT on a connection that is reconnecting waits for Redis to come back (a subscriber, or any
 * connection with an offline queue), so a process told to stop during an outage would never exit.
 */
export async function closeRedis(client: RedisClient | undefined): Promise<void> {
  if (client === undefined) return;
  if (client.status !== 'ready') {
    client.disconnect();
    watched.delete(client);
    return;
  }
  await client.quit().then(
    () => undefined,
    () => client.disconnect(),
  );
  watched.delete(client);
}

/**
 * The socket of a single-server (or Sentinel-chosen) connection, for writes of one turn to be
 * corked into one (see TickBatcher); undefined for a Cluster (a socket per node) or before connecting.
 */
export function socketOf(redis: RedisClient): { cork(): void; uncork(): void } | undefined {
  if ((redis as { isCluster?: boolean }).isCluster === true) return undefined;
  const stream = (redis as { stream?: { cork?: () => void; uncork?: () => void; writable?: boolean } }).stream;
  return stream !== undefined && typeof stream.cork === 'function' && stream.writable === true ? (stream as { cork(): void; uncork(): void }) : undefined;
}
