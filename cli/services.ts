import { join } from 'node:path';
import type { Settings } from '../core/config/settings.js';
import type { Registry } from '../core/metrics.js';
import { Gauge } from 'prom-client';
import type { SchedulerOptions } from '../scheduler/scheduler-service.js';
import { RedisLeaderLock } from '../scheduler/leader-lock.js';
import { loadTls } from './tls.js';
import { openDatabase, type Database } from '../core/database/database.js';
import { migrate } from '../core/database/migrate.js';
import { MemoryRateLimiter } from '../core/ratelimit/memory-rate-limiter.js';
import type { RateLimiter } from '../core/ratelimit/rate-limiter.js';
import { RedisRateLimiter } from '../core/ratelimit/redis-rate-limiter.js';
import { ResilientRateLimiter } from '../core/ratelimit/resilient-rate-limiter.js';
import type { Logger } from '../core/logger.js';
import { closeRedis, connectRedis, describeRedis, redisConfigured, registerRedisMetrics, type RedisClient } from '../core/redis-connection.js';
import { PgKeyStore, type KeyStore } from '../core/storage/key-store.js';
import { PgNodeStore, type NodeStore } from '../core/storage/node-store.js';
import { MemoryLiveState, RedisLiveState, type LiveState } from '../core/storage/live-state.js';
import { MemoryUsageBuffer, RedisUsageBuffer, type UsageBuffer } from '../core/storage/usage-buffer.js';
import { UsageFlusher } from '../core/storage/usage-flusher.js';
import { WriteThroughUsageBuffer } from '../core/storage/write-through-usage.js';
import { PgUsageStore, type UsageStore } from '../core/storage/usage-store.js';
import type { CapacityLedger } from '../scheduler/capacity/ledger.js';
import { MemoryResponseStore, PgResponseArchive, RedisResponseStore, type ResponseStore } from '../core/storage/response-store.js';
import { MemoryLedger } from '../scheduler/capacity/memory-ledger.js';
import { RedisLedger } from '../scheduler/capacity/redis-ledger.js';
import { ResilientLedger } from '../scheduler/capacity/resilient-ledger.js';

/**
 * The composition root for state: Redis when one is configured (REDIS_URL, Sentinel or Cluster:
 * docs/redis.md; else in-process memory), Postgres
 * when DATABASE_URL is set (else the embedded PGlite in the data directory). Callers receive
 * interfaces and never branch on which backend is behind them.
 */
export interface Services {
  readonly db: Database;
  readonly redis: RedisClient | undefined;
  readonly keyStore: KeyStore;
  readonly usageStore: UsageStore;
  readonly nodeStore: NodeStore;
  /** Agents' load reports, scheduler → gateways (Redis pub/sub, or in-process without Redis). */
  readonly liveState: LiveState;
  readonly limiter: RateLimiter;
  readonly usageBuffer: UsageBuffer;
  /** Capacity reservations: shared by every gateway through Redis, else this process's own. */
  readonly ledger: CapacityLedger;
  /** Responses API records: hot in Redis (else this process's memory), archived to Postgres. */
  readonly responses: ResponseStore;
  /** True when the usage buffer lives in this process: then this process must flush it. */
  readonly localUsageBuffer: boolean;
  /** Limiter calls that failed (Redis unreachable), for switchyard_rate_limiter_errors_total. */
  limiterErrors(): number;
  /** Ledger calls that failed (Redis unreachable), for switchyard_capacity_ledger_errors_total. */
  ledgerErrors(): number;
  /** Postgres pool and Redis health gauges on the process's registry. */
  registerMetrics(registry: Registry): void;
  close(): Promise<void>;
}

export async function openServices(settings: Settings, logger: Logger): Promise<Services> {
  const log = logger.child({ module: 'services' });
  // Fails fast while disconnected (the `state` profile), so the hot path never waits on a dead
  // Redis. Limiter, ledger, usage buffer, response store and the live-state publisher share it.
  const redis = redisConfigured(settings) ? connectRedis(settings, 'state', log) : undefined;
  const db = await openDatabase({
    ...(settings.databaseUrl === undefined ? {} : { url: settings.databaseUrl }),
    dataDir: join(settings.dataDir, 'pglite'),
    poolSize: settings.pgPoolSize,
    schema: settings.databaseSchema,
    log,
  });
  try {
    await migrate(db, log); // logs what it applied
  } catch (err) {
    await db.close();
    redis?.disconnect();
    throw err;
  }
  log.info({ database: db.kind, redis: describeRedis(settings) }, 'state backends ready');
  let limiterErrors = 0;
  const limiter: RateLimiter =
    redis === undefined
      ? new MemoryRateLimiter()
      : new ResilientRateLimiter(new RedisRateLimiter({ redis, keyPrefix: settings.redisPrefix }), {
          mode: settings.rateLimitFailure,
          log: logger.child({ module: 'rate-limiter' }),
          onError: () => {
            limiterErrors++;
          },
        });
  const usageStore = new PgUsageStore(db);
  // With Redis, each process writes its own usage records to Postgres in batches and uses Redis
  // only while Postgres is away: a Redis that restarts empty then loses no record.
  const usageBuffer: UsageBuffer =
    redis === undefined
      ? new MemoryUsageBuffer()
      : new WriteThroughUsageBuffer({
          store: usageStore,
          // A worker killed while draining holds the drain lease until it expires: keep it short.
          fallback: new RedisUsageBuffer({ redis, key: `${settings.redisPrefix}usage`, lockMs: Math.max(3000, settings.usageFlushIntervalMs * 5) }),
          intervalMs: settings.usageFlushIntervalMs,
          log: logger.child({ module: 'usage' }),
        });
  let ledgerErrors = 0;
  const ledger: CapacityLedger =
    redis === undefined
      ? new MemoryLedger(settings.capacityLeaseTtlMs)
      : new ResilientLedger(
          new RedisLedger({ redis, keyPrefix: settings.redisPrefix, leaseTtlMs: settings.capacityLeaseTtlMs }),
          logger.child({ module: 'capacity-ledger' }),
          () => {
            ledgerErrors++;
          },
        );
  const archive = new PgResponseArchive(db);
  const responses: ResponseStore = redis === undefined ? new MemoryResponseStore(archive) : new RedisResponseStore(redis, settings.redisPrefix, archive);
  const liveState: LiveState = redis === undefined ? new MemoryLiveState() : new RedisLiveState(redis, settings.redisPrefix, log);
  return {
    db,
    redis,
    keyStore: new PgKeyStore(db),
    usageStore,
    nodeStore: new PgNodeStore(db),
    liveState,
    limiter,
    usageBuffer,
    ledger,
    responses,
    localUsageBuffer: redis === undefined,
    limiterErrors: () => limiterErrors,
    ledgerErrors: () => ledgerErrors,
    registerMetrics: (registry) => registerStateMetrics(registry, db, redis),
    async close() {
      await liveState.close();
      await usageBuffer.close();
      await limiter.close();
      await ledger.close();
      await responses.close();
      await db.close();
      await closeRedis(redis);
    },
  };
}

/** Gauges read at scrape time: the bounded Postgres pool's use and whether Redis answers. */
function registerStateMetrics(registry: Registry, db: Database, redis: RedisClient | undefined): void {
  registerRedisMetrics(registry);
  new Gauge({
    name: 'switchyard_postgres_pool_connections',
    help: 'Connections of this process\'s Postgres pool, by state (total, idle, waiting = requests queued for a connection), and its size (max).',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.set({ state: 'total' }, db.pool.totalCount);
      this.set({ state: 'idle' }, db.pool.idleCount);
      this.set({ state: 'waiting' }, db.pool.waitingCount);
      this.set({ state: 'max' }, db.pool.options.max ?? 0);
    },
  });
  new Gauge({
    name: 'switchyard_redis_up',
    help: '1 while this process\'s Redis connection is ready, 0 while it is not, absent without Redis.',
    registers: [registry],
    collect() {
      if (redis !== undefined) this.set(redis.status === 'ready' ? 1 : 0);
    },
  });
}

export function startUsageFlusher(services: Services, settings: Settings, logger: Logger): UsageFlusher {
  const flusher = new UsageFlusher({
    buffer: services.usageBuffer,
    store: services.usageStore,
    intervalMs: settings.usageFlushIntervalMs,
    log: logger.child({ module: 'usage-flusher' }),
  });
  flusher.start();
  return flusher;
}

/** The scheduler's options from settings and the process's state backends (`scheduler` and `start`). */
export async function schedulerOptions(settings: Settings, services: Services, logger: Logger, registry: Registry): Promise<SchedulerOptions> {
  return {
    nodes: services.nodeStore,
    db: services.db,
    live: services.liveState,
    log: logger.child({ module: 'scheduler' }),
    host: settings.host,
    port: settings.schedulerPort,
    reportIntervalMs: settings.reportIntervalMs,
    staleAfterIntervals: settings.staleAfterIntervals,
    unhealthyAfterIntervals: settings.unhealthyAfterIntervals,
    ghostNodeAfterMs: settings.ghostNodeAfterMs,
    // Scheduler replicas of a region elect one to run the region-wide jobs (a lock in its Redis).
    leader: services.redis === undefined ? undefined : new RedisLeaderLock({ redis: services.redis, key: `${settings.redisPrefix}scheduler:leader` }),
    tls: await loadTls(settings),
    registry,
  };
}
