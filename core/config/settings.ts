import { isLogFormat, LOG_FORMATS, type LogFormat } from '../logger.js';
import { ConfigError, type ConfigProblem } from './config-error.js';
import type { RedisEndpoint } from '../redis-connection.js';

/**
 * Process settings: flags override environment variables, which override defaults. Read once in
 * `main` and passed down frozen; nothing else reads `process.env`.
 */
/** Every process setting; how to reach Redis (a URL, a Sentinel set or a Cluster, TLS) is a RedisEndpoint. */
export interface Settings extends RedisEndpoint {
  readonly configPath: string;
  readonly host: string;
  readonly port: number;
  /** The gateway's own region; default: the first region in regions.yaml. */
  readonly region: string | undefined;
  readonly logLevel: string;
  readonly logFormat: LogFormat;
  readonly connectTimeoutMs: number;
  readonly firstByteTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly retryAttempts: number;
  readonly retryBudgetMs: number;
  readonly retryBaseMs: number;
  readonly breakerFailures: number;
  readonly breakerCooldownMs: number;
  readonly healthIntervalMs: number;
  readonly healthFailures: number;
  readonly shutdownGraceMs: number;
  readonly bodyLimitBytes: number;
  readonly defaultMaxTokens: number;
  /** Prefix of every Redis key (no Redis at all: in-memory state, single process). */
  readonly redisPrefix: string;
  /** Unset: an embedded Postgres (PGlite) in `dataDir`. */
  readonly databaseUrl: string | undefined;
  readonly databaseSchema: string;
  readonly dataDir: string;
  readonly pgPoolSize: number;
  /** Unset: the admin API is off. */
  readonly adminToken: string | undefined;
  /** Shared by the regions' gateways: authenticates forwarded requests and summaries between them. */
  readonly regionToken: string | undefined;
  readonly regionSummaryMs: number;
  /** `keys` requires an API key on /v1; `none` lets everything through (default only on loopback). */
  readonly auth: 'none' | 'keys';
  readonly rateLimitFailure: 'open' | 'closed';
  readonly keyCacheTtlMs: number;
  readonly usageFlushIntervalMs: number;
  /** The scheduler's gRPC port for node agents. */
  readonly schedulerPort: number;
  readonly reportIntervalMs: number;
  /** Missed report intervals after which a node is stale (no traffic) and then unhealthy. */
  readonly staleAfterIntervals: number;
  readonly unhealthyAfterIntervals: number;
  /** Self-registered nodes whose agent has been gone this long are removed; 0: never. */
  readonly ghostNodeAfterMs: number;
  /** PEM files for the scheduler's gRPC TLS; both unset: plaintext (inside a trusted network). */
  readonly grpcTlsCert: string | undefined;
  readonly grpcTlsKey: string | undefined;
  /** A node's token budget in the capacity ledger is its tokens/s × this many seconds. */
  readonly capacityHorizonSeconds: number;
  readonly capacityLeaseTtlMs: number;
  readonly capacitySyncMs: number;
  readonly queueMax: number;
  /** Longest wait for capacity per priority class, ms; `x-switchyard-queue-timeout-ms` may shorten it. */
  readonly queueDeadlineInteractiveMs: number;
  readonly queueDeadlineStandardMs: number;
  readonly queueDeadlineBatchMs: number;
  /** Background responses (`switchyard worker`). */
  readonly workerConcurrency: number;
  readonly jobLockMs: number;
  readonly jobAttempts: number;
  readonly workerGraceMs: number;
  /** Mid-stream failovers allowed per streamed request (0: off). */
  readonly failoverMax: number;
  /** Finished responses untouched this long move from Redis (or memory) to Postgres. */
  readonly conversationIdleMs: number;
}

type Kind = 'string' | 'port' | 'int' | 'level' | 'format' | 'auth' | 'failure' | 'secret';

interface Knob {
  readonly key: keyof Settings;
  readonly env: string;
  readonly flag: string;
  readonly kind: Kind;
  readonly def: string | number | undefined;
  readonly min?: number;
  readonly doc: string;
}

/** Every knob, its unit and default: docs/configuration.md is written from this table. */
export const KNOBS: readonly Knob[] = [
  { key: 'configPath', env: 'SWITCHYARD_CONFIG', flag: 'config', kind: 'string', def: './regions.yaml', doc: 'path of regions.yaml' },
  { key: 'host', env: 'SWITCHYARD_HOST', flag: 'host', kind: 'string', def: '127.0.0.1', doc: 'address the gateway listens on' },
  { key: 'port', env: 'SWITCHYARD_PORT', flag: 'port', kind: 'port', def: 8080, doc: 'gateway port (0 picks a free one)' },
  { key: 'region', env: 'SWITCHYARD_REGION', flag: 'region', kind: 'string', def: undefined, doc: "the gateway's own region (default: the first in regions.yaml)" },
  { key: 'logLevel', env: 'SWITCHYARD_LOG_LEVEL', flag: 'log-level', kind: 'level', def: 'info', doc: 'pino level: fatal, error, warn, info, debug, trace, silent' },
  { key: 'logFormat', env: 'SWITCHYARD_LOG_FORMAT', flag: 'log-format', kind: 'format', def: 'auto', doc: 'auto: one pretty line per event when stdout is a terminal, JSON lines otherwise; json; pretty' },
  { key: 'connectTimeoutMs', env: 'SWITCHYARD_CONNECT_TIMEOUT_MS', flag: 'connect-timeout-ms', kind: 'int', def: 2000, min: 1, doc: 'upstream TCP connect timeout, ms' },
  { key: 'firstByteTimeoutMs', env: 'SWITCHYARD_FIRST_BYTE_TIMEOUT_MS', flag: 'first-byte-timeout-ms', kind: 'int', def: 60_000, min: 1, doc: 'time from sending to upstream response headers, ms (a non-streaming request spends its whole generation here)' },
  { key: 'idleTimeoutMs', env: 'SWITCHYARD_IDLE_TIMEOUT_MS', flag: 'idle-timeout-ms', kind: 'int', def: 30_000, min: 1, doc: 'longest silence between two upstream body chunks, ms' },
  { key: 'retryAttempts', env: 'SWITCHYARD_RETRY_ATTEMPTS', flag: 'retry-attempts', kind: 'int', def: 3, min: 1, doc: 'upstream attempts per request, first one included' },
  { key: 'retryBudgetMs', env: 'SWITCHYARD_RETRY_BUDGET_MS', flag: 'retry-budget-ms', kind: 'int', def: 10_000, min: 0, doc: 'total time that retries (backoff included) may add, ms' },
  { key: 'retryBaseMs', env: 'SWITCHYARD_RETRY_BASE_MS', flag: 'retry-base-ms', kind: 'int', def: 25, min: 0, doc: 'base of the exponential backoff with full jitter, ms' },
  { key: 'breakerFailures', env: 'SWITCHYARD_BREAKER_FAILURES', flag: 'breaker-failures', kind: 'int', def: 3, min: 1, doc: 'consecutive failures that eject a node' },
  { key: 'breakerCooldownMs', env: 'SWITCHYARD_BREAKER_COOLDOWN_MS', flag: 'breaker-cooldown-ms', kind: 'int', def: 10_000, min: 1, doc: 'how long an ejected node rests before it is probed back, ms' },
  { key: 'healthIntervalMs', env: 'SWITCHYARD_HEALTH_INTERVAL_MS', flag: 'health-interval-ms', kind: 'int', def: 5000, min: 100, doc: 'active health check period per node, ms' },
  { key: 'healthFailures', env: 'SWITCHYARD_HEALTH_FAILURES', flag: 'health-failures', kind: 'int', def: 2, min: 1, doc: "failed health probes in a row before a passing node is marked unhealthy (a node's first probe decides at once)" },
  { key: 'shutdownGraceMs', env: 'SWITCHYARD_SHUTDOWN_GRACE_MS', flag: 'shutdown-grace-ms', kind: 'int', def: 10_000, min: 0, doc: 'on SIGTERM, how long open requests may finish before they are cut, ms' },
  { key: 'bodyLimitBytes', env: 'SWITCHYARD_BODY_LIMIT_BYTES', flag: 'body-limit-bytes', kind: 'int', def: 16 * 1024 * 1024, min: 1024, doc: 'largest request body accepted, bytes (larger: 413)' },
  { key: 'redisUrl', env: 'REDIS_URL', flag: 'redis-url', kind: 'secret', def: undefined, doc: 'Redis for limits, key cache invalidation and the usage buffer (unset: in-process memory, one process only)' },
  { key: 'redisPrefix', env: 'SWITCHYARD_REDIS_PREFIX', flag: 'redis-prefix', kind: 'string', def: 'switchyard:', doc: 'prefix of every Redis key' },
  { key: 'redisCaFile', env: 'SWITCHYARD_REDIS_CA_FILE', flag: 'redis-ca-file', kind: 'string', def: undefined, doc: 'PEM CA bundle trusted for TLS to Redis (rediss:// URLs, rediss:// sentinels or cluster nodes) instead of the system CAs' },
  { key: 'redisSentinels', env: 'SWITCHYARD_REDIS_SENTINELS', flag: 'redis-sentinels', kind: 'string', def: undefined, doc: 'Redis through Sentinel: host:port,… of the sentinels (rediss://host:port: TLS), instead of REDIS_URL' },
  { key: 'redisMaster', env: 'SWITCHYARD_REDIS_MASTER', flag: 'redis-master', kind: 'string', def: undefined, doc: 'the master name the sentinels monitor (with SWITCHYARD_REDIS_SENTINELS)' },
  { key: 'redisPassword', env: 'SWITCHYARD_REDIS_PASSWORD', flag: 'redis-password', kind: 'secret', def: undefined, doc: 'password of the Sentinel-managed or Cluster Redis servers (REDIS_URL carries its own)' },
  { key: 'redisSentinelPassword', env: 'SWITCHYARD_REDIS_SENTINEL_PASSWORD', flag: 'redis-sentinel-password', kind: 'secret', def: undefined, doc: 'password of the sentinels themselves' },
  { key: 'redisCluster', env: 'SWITCHYARD_REDIS_CLUSTER', flag: 'redis-cluster', kind: 'string', def: undefined, doc: 'Redis Cluster: host:port,… of some nodes (rediss://…: TLS), instead of REDIS_URL' },
  { key: 'databaseUrl', env: 'DATABASE_URL', flag: 'database-url', kind: 'secret', def: undefined, doc: 'Postgres for tenants, keys and usage (unset: embedded PGlite in the data directory)' },
  { key: 'databaseSchema', env: 'SWITCHYARD_DATABASE_SCHEMA', flag: 'database-schema', kind: 'string', def: 'public', doc: 'Postgres schema of the tables (created if missing)' },
  { key: 'dataDir', env: 'SWITCHYARD_DATA_DIR', flag: 'data-dir', kind: 'string', def: './data', doc: 'where the embedded Postgres keeps its files' },
  { key: 'pgPoolSize', env: 'SWITCHYARD_PG_POOL_SIZE', flag: 'pg-pool-size', kind: 'int', def: 10, min: 1, doc: 'most Postgres connections this process opens' },
  { key: 'adminToken', env: 'SWITCHYARD_ADMIN_TOKEN', flag: 'admin-token', kind: 'secret', def: undefined, doc: 'bearer token of the admin API /admin/v1 (unset: admin API off)' },
  { key: 'regionToken', env: 'SWITCHYARD_REGION_TOKEN', flag: 'region-token', kind: 'secret', def: undefined, doc: "secret shared by every region's gateways: authenticates forwarded requests and capacity summaries between regions (unset: no forwarding, /internal off)" },
  { key: 'regionSummaryMs', env: 'SWITCHYARD_REGION_SUMMARY_MS', flag: 'region-summary-ms', kind: 'int', def: 1000, min: 50, doc: "how often a gateway fetches each neighbour region's capacity summary; one older than 3 intervals counts as saturated, ms" },
  { key: 'auth', env: 'SWITCHYARD_AUTH', flag: 'auth', kind: 'auth', def: undefined, doc: 'keys: /v1 requires an API key; none: no auth (default none on a loopback host, keys otherwise)' },
  { key: 'rateLimitFailure', env: 'SWITCHYARD_RATE_LIMIT_FAILURE', flag: 'rate-limit-failure', kind: 'failure', def: 'open', doc: 'when Redis is unreachable: open admits without limits, closed answers 503' },
  { key: 'keyCacheTtlMs', env: 'SWITCHYARD_KEY_CACHE_TTL_MS', flag: 'key-cache-ttl-ms', kind: 'int', def: 5000, min: 0, doc: 'how long a gateway trusts a cached key lookup, ms (revocations also arrive within about 1 s)' },
  { key: 'usageFlushIntervalMs', env: 'SWITCHYARD_USAGE_FLUSH_INTERVAL_MS', flag: 'usage-flush-interval-ms', kind: 'int', def: 1000, min: 10, doc: 'how often usage records are written to Postgres in batches, ms' },
  { key: 'schedulerPort', env: 'SWITCHYARD_SCHEDULER_PORT', flag: 'scheduler-port', kind: 'port', def: 50051, doc: 'gRPC port of `switchyard scheduler` for node agents (0 picks a free one)' },
  { key: 'reportIntervalMs', env: 'SWITCHYARD_REPORT_INTERVAL_MS', flag: 'report-interval-ms', kind: 'int', def: 1000, min: 100, doc: 'how often agents report load, ms (sent to them in Welcome)' },
  { key: 'staleAfterIntervals', env: 'SWITCHYARD_STALE_AFTER_INTERVALS', flag: 'stale-after-intervals', kind: 'int', def: 3, min: 1, doc: 'missed report intervals after which a registered node is stale and gets no traffic' },
  { key: 'unhealthyAfterIntervals', env: 'SWITCHYARD_UNHEALTHY_AFTER_INTERVALS', flag: 'unhealthy-after-intervals', kind: 'int', def: 10, min: 1, doc: 'missed report intervals after which the scheduler marks a node unhealthy' },
  { key: 'ghostNodeAfterMs', env: 'SWITCHYARD_GHOST_NODE_AFTER_MS', flag: 'ghost-node-after-ms', kind: 'int', def: 600_000, min: 0, doc: 'the scheduler removes a self-registered node (bootstrap token) whose agent no scheduler has seen for this long, ms; 0: never' },
  { key: 'grpcTlsCert', env: 'SWITCHYARD_GRPC_TLS_CERT', flag: 'grpc-tls-cert', kind: 'string', def: undefined, doc: 'PEM certificate chain of the scheduler gRPC endpoint (with --grpc-tls-key: TLS on)' },
  { key: 'grpcTlsKey', env: 'SWITCHYARD_GRPC_TLS_KEY', flag: 'grpc-tls-key', kind: 'string', def: undefined, doc: 'PEM private key of the scheduler gRPC endpoint' },
  { key: 'capacityHorizonSeconds', env: 'SWITCHYARD_CAPACITY_HORIZON_S', flag: 'capacity-horizon-s', kind: 'int', def: 30, min: 1, doc: "a node's token budget in the capacity ledger: its tokens/s × this many seconds of work, s" },
  { key: 'capacityLeaseTtlMs', env: 'SWITCHYARD_CAPACITY_LEASE_TTL_MS', flag: 'capacity-lease-ttl-ms', kind: 'int', def: 30_000, min: 100, doc: "lifetime of a capacity reservation unless its gateway renews it (every third of it): a dead gateway's capacity returns within this, ms" },
  { key: 'capacitySyncMs', env: 'SWITCHYARD_CAPACITY_SYNC_MS', flag: 'capacity-sync-ms', kind: 'int', def: 100, min: 10, doc: 'while requests wait, how often the ledger view is refreshed and the queue retried (idle: every second), ms' },
  { key: 'queueMax', env: 'SWITCHYARD_QUEUE_MAX', flag: 'queue-max', kind: 'int', def: 10_000, min: 0, doc: 'most requests waiting for capacity per model and region; beyond it 503 no_capacity at once' },
  { key: 'queueDeadlineInteractiveMs', env: 'SWITCHYARD_QUEUE_DEADLINE_INTERACTIVE_MS', flag: 'queue-deadline-interactive-ms', kind: 'int', def: 30_000, min: 0, doc: 'longest wait for capacity of an interactive request, ms' },
  { key: 'queueDeadlineStandardMs', env: 'SWITCHYARD_QUEUE_DEADLINE_STANDARD_MS', flag: 'queue-deadline-standard-ms', kind: 'int', def: 60_000, min: 0, doc: 'longest wait for capacity of a standard request (the default class), ms' },
  { key: 'queueDeadlineBatchMs', env: 'SWITCHYARD_QUEUE_DEADLINE_BATCH_MS', flag: 'queue-deadline-batch-ms', kind: 'int', def: 300_000, min: 0, doc: 'longest wait for capacity of a batch request, ms' },
  { key: 'workerConcurrency', env: 'SWITCHYARD_WORKER_CONCURRENCY', flag: 'worker-concurrency', kind: 'int', def: 256, min: 1, doc: 'background responses a worker runs at once (each still waits for fleet capacity in the ledger)' },
  { key: 'jobLockMs', env: 'SWITCHYARD_JOB_LOCK_MS', flag: 'job-lock-ms', kind: 'int', def: 30_000, min: 500, doc: "lock of a running background job, renewed while it runs: a killed worker's job is picked up again after this, ms" },
  { key: 'jobAttempts', env: 'SWITCHYARD_JOB_ATTEMPTS', flag: 'job-attempts', kind: 'int', def: 3, min: 1, doc: 'runs of a background response before it fails (upstream errors retried with exponential backoff from 1 s)' },
  { key: 'failoverMax', env: 'SWITCHYARD_FAILOVER_MAX', flag: 'failover-max', kind: 'int', def: 1, min: 0, doc: 'times a stream whose node fails after the first byte is continued on another node (0: off; per request: x-switchyard-failover: off)' },
  { key: 'workerGraceMs', env: 'SWITCHYARD_WORKER_GRACE_MS', flag: 'worker-grace-ms', kind: 'int', def: 30_000, min: 0, doc: "how long a gateway accepts background responses while no worker serves its region's queue (logged at once; then 503 no_worker), ms" },
  { key: 'conversationIdleMs', env: 'SWITCHYARD_CONVERSATION_IDLE_MS', flag: 'conversation-idle-ms', kind: 'int', def: 600_000, min: 0, doc: 'finished responses untouched this long move from Redis (or memory) to Postgres; read back on demand, ms' },
  { key: 'defaultMaxTokens', env: 'SWITCHYARD_DEFAULT_MAX_TOKENS', flag: 'default-max-tokens', kind: 'int', def: 512, min: 1, doc: 'output tokens assumed for routing when a request sets no max_tokens' },
];

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

export type FlagValues = Readonly<Record<string, string | boolean | undefined>>;

export function loadSettings(env: NodeJS.ProcessEnv, flags: FlagValues = {}): Settings {
  const problems: ConfigProblem[] = [];
  const out: Record<string, unknown> = {};
  for (const knob of KNOBS) {
    const flag = flags[knob.flag];
    const fromFlag = typeof flag === 'string' ? flag : undefined;
    const raw = fromFlag ?? env[knob.env];
    const where = fromFlag !== undefined ? `--${knob.flag}` : knob.env;
    if (raw === undefined || raw === '') {
      out[knob.key] = knob.def;
      continue;
    }
    const parsed = parseKnob(knob, raw);
    if (typeof parsed === 'string' && parsed.startsWith('!')) problems.push({ path: where, message: parsed.slice(1) });
    else out[knob.key] = parsed;
  }
  if (out['auth'] === undefined) out['auth'] = isLoopback(String(out['host'])) ? 'none' : 'keys';
  if ((out['grpcTlsCert'] === undefined) !== (out['grpcTlsKey'] === undefined)) {
    problems.push({ path: 'SWITCHYARD_GRPC_TLS_CERT', message: 'set both SWITCHYARD_GRPC_TLS_CERT and SWITCHYARD_GRPC_TLS_KEY, or neither' });
  }
  const redisNamed = [out['redisUrl'], out['redisSentinels'], out['redisCluster']].filter((v) => v !== undefined).length;
  if (redisNamed > 1) problems.push({ path: 'REDIS_URL', message: 'set only one of REDIS_URL, SWITCHYARD_REDIS_SENTINELS and SWITCHYARD_REDIS_CLUSTER' });
  if (out['redisSentinels'] !== undefined && out['redisMaster'] === undefined) problems.push({ path: 'SWITCHYARD_REDIS_MASTER', message: 'required with SWITCHYARD_REDIS_SENTINELS' });
  if (problems.length > 0) throw new ConfigError('settings', problems);
  return Object.freeze(out) as unknown as Settings;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** Returns the value, or a message prefixed with `!`. */
function parseKnob(knob: Knob, raw: string): string | number {
  switch (knob.kind) {
    case 'string':
    case 'secret':
      return raw;
    case 'auth':
      return raw === 'none' || raw === 'keys' ? raw : '!must be none or keys';
    case 'failure':
      return raw === 'open' || raw === 'closed' ? raw : '!must be open or closed';
    case 'level':
      return LEVELS.has(raw) ? raw : `!must be one of ${[...LEVELS].join(', ')}`;
    case 'format':
      return isLogFormat(raw) ? raw : `!must be one of ${LOG_FORMATS.join(', ')}`;
    case 'port': {
      const n = Number(raw);
      return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : '!must be a port number 0-65535';
    }
    case 'int': {
      const n = Number(raw);
      const min = knob.min ?? 0;
      return Number.isInteger(n) && n >= min ? n : `!must be an integer >= ${min}`;
    }
  }
}
