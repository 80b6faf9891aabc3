import { loadRegionsFile } from '../../core/config/load-regions.js';
import type { Settings } from '../../core/config/settings.js';
import type { Topology } from '../../core/config/topology.js';
import { createLogger, type Logger } from '../../core/logger.js';
import { createRegistry, type Registry } from '../../core/metrics.js';
import { packageVersion } from '../../core/version.js';
import { resolveRegion } from '../../gateway/main.js';
import { BackgroundWorker } from '../../gateway/responses/background-worker.js';
import { ConversationArchiver } from '../../gateway/responses/conversation-archiver.js';
import { ResponseRunner } from '../../gateway/responses/response-runner.js';
import { UpstreamStack } from '../../gateway/upstream-stack.js';
import { settingsFromArgv, UsageError, waitForSignal } from '../run-command.js';
import { serveMetrics } from '../metrics-server.js';
import { openServices, startUsageFlusher, type Services } from '../services.js';
import { Gauge } from 'prom-client';
import { BackgroundJobs } from '../../gateway/responses/background-jobs.js';
import { redisConfigured } from '../../core/redis-connection.js';
import { checkRedisDurability } from '../../core/redis-durability.js';

/**
 * `switchyard worker`: background consumers of one region (SWITCHYARD_REGION, else the first):
 * background responses from the region's BullMQ queue (taking capacity from the shared ledger),
 * the idle-conversation sweep to Postgres, and the usage buffer drained into Postgres in batches.
 * Without Redis there is nothing shared to consume: `switchyard start` or each gateway does it.
 */
export async function workerCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  if (!redisConfigured(settings)) {
    throw new UsageError('worker needs Redis (REDIS_URL, SWITCHYARD_REDIS_SENTINELS or SWITCHYARD_REDIS_CLUSTER): its queues live in Redis (without Redis, `switchyard start` or each gateway writes usage itself)');
  }
  const topology = await loadRegionsFile(settings.configPath);
  resolveRegion(settings, topology);
  const logger = createLogger({ name: 'switchyard', level: settings.logLevel, format: settings.logFormat });
  const services = await openServices(settings, logger);
  const flusher = startUsageFlusher(services, settings, logger);
  const registry = createRegistry('worker', packageVersion());
  services.registerMetrics(registry);
  const background = await startBackgroundWork(settings, topology, services, registry, logger);
  // /metrics and /healthz on SWITCHYARD_PORT, for Prometheus and the orchestrator.
  const http = await serveMetrics(registry, settings.host, settings.port);
  logger.info({ url: http.url, database: services.db.kind, region: background.region }, 'worker running');
  try {
    const signal = await waitForSignal();
    logger.info({ signal }, 'shutting down');
  } finally {
    await http.close();
    await background.stop();
    await flusher.stop();
    await services.close();
  }
}

export interface BackgroundWork {
  readonly region: string;
  stop(): Promise<void>;
}

/** The worker's consumers, also run inside `switchyard start` when Redis is configured. */
export async function startBackgroundWork(
  settings: Settings,
  topology: Topology,
  services: Services,
  registry: Registry,
  logger: Logger,
): Promise<BackgroundWork> {
  const region = resolveRegion(settings, topology);
  const log = logger.child({ module: 'worker', region: region.id });
  const stack = new UpstreamStack({ settings, topology, registry, log, services });
  await stack.start();
  const worker = new BackgroundWorker({
    redis: settings,
    redisPrefix: settings.redisPrefix,
    region: region.id,
    route: () => stack.fleet.routeFrom(region.id),
    concurrency: settings.workerConcurrency,
    lockMs: settings.jobLockMs,
    store: services.responses,
    runner: new ResponseRunner(stack, services.responses, settings),
    usage: services.usageBuffer,
    log,
  });
  await worker.start();
  // Jobs are only as durable as the Redis that holds them: say so when it keeps too little.
  void checkRedisDurability(worker.redis, log);
  // Jobs by state of this region's queue, counted by Redis at scrape time.
  const counts = new BackgroundJobs({ redis: settings, redisPrefix: settings.redisPrefix, region: region.id, attempts: 1, log });
  new Gauge({
    name: 'switchyard_worker_jobs',
    help: "Background-response jobs in this worker's region queue, by state (waiting, active, delayed, prioritized, failed; completed ones are removed).",
    labelNames: ['region', 'state'],
    registers: [registry],
    async collect() {
      const byState = await counts.counts().catch(() => undefined);
      if (byState === undefined) return;
      for (const [state, n] of Object.entries(byState)) if (state !== 'completed') this.set({ region: region.id, state }, n);
    },
  });
  const archiver = new ConversationArchiver(services.responses, settings.conversationIdleMs, log.child({ module: 'archiver' }));
  archiver.start();
  return {
    region: region.id,
    async stop() {
      await archiver.stop();
      await worker.close(settings.shutdownGraceMs);
      await counts.close();
      stack.stopBackground();
      await stack.pools.close(0);
    },
  };
}
