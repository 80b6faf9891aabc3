import type { Settings } from '../core/config/settings.js';
import type { RegionSpec, Topology } from '../core/config/topology.js';
import { ConfigError } from '../core/config/config-error.js';
import type { Logger } from '../core/logger.js';
import { counterFrom, createRegistry, type Registry } from '../core/metrics.js';
import { packageVersion } from '../core/version.js';
import type { CapacityLedger } from '../scheduler/capacity/ledger.js';
import { Counter, Gauge } from 'prom-client';
import type { RateLimiter } from '../core/ratelimit/rate-limiter.js';
import type { KeyStore } from '../core/storage/key-store.js';
import type { NodeStore } from '../core/storage/node-store.js';
import type { LiveState } from '../core/storage/live-state.js';
import type { UsageBuffer } from '../core/storage/usage-buffer.js';
import type { UsageStore } from '../core/storage/usage-store.js';
import { KeyCache } from './auth/key-cache.js';
import { RequestAccounting } from './usage/accounting.js';
import { buildApp } from './app.js';
import { UpstreamStack } from './upstream-stack.js';
import type { ResponseStore } from '../core/storage/response-store.js';
import { BackgroundJobs } from './responses/background-jobs.js';
import { MemoryEventLog, RedisEventLog, type EventLog } from './responses/response-event-log.js';
import { InProcessJobs } from './responses/in-process-jobs.js';
import { RegionPeers } from './regions/region-peers.js';
import { summarise } from './regions/region-summary.js';
import { RegionalResponseStore } from './regions/regional-responses.js';
import { LeasedRateLimiter } from '../core/ratelimit/leased-rate-limiter.js';
import { RedisRateLimiter } from '../core/ratelimit/redis-rate-limiter.js';
import { ResilientRateLimiter } from '../core/ratelimit/resilient-rate-limiter.js';
import { redisConfigured, type RedisClient } from '../core/redis-connection.js';
import type { Fleet } from '../scheduler/fleet.js';
import type { JobQueue } from './responses/background-jobs.js';
import { ConversationArchiver } from './responses/conversation-archiver.js';
import { ResponseRunner } from './responses/response-runner.js';

export interface GatewayHandle {
  readonly url: string;
  readonly port: number;
  /** Stops accepting, lets open requests finish within the grace period, then cuts the rest. */
  close(): Promise<void>;
}

/** State the gateway uses but does not own: built (and closed) by the process's composition root. */
export interface GatewayServices {
  readonly keyStore: KeyStore;
  readonly usageStore: UsageStore;
  readonly limiter: RateLimiter;
  readonly usageBuffer: UsageBuffer;
  readonly nodeStore: NodeStore;
  readonly liveState: LiveState;
  /** Capacity reservations shared by every gateway (Redis), or this process's (memory). */
  readonly ledger: CapacityLedger;
  readonly responses: ResponseStore;
  /** The region's Redis, when there is one (regional limit slices live there). */
  readonly redis?: RedisClient | undefined;
  limiterErrors?(): number;
  ledgerErrors?(): number;
  /** Postgres pool and Redis health gauges (cli/services.ts). */
  registerMetrics?(registry: Registry): void;
}

export interface GatewayOptions {
  readonly settings: Settings;
  readonly topology: Topology;
  readonly logger: Logger;
  readonly services: GatewayServices;
  /** The process's registry when other components share it (`switchyard start`). */
  readonly registry?: Registry;
  /**
   * Without Redis, run background responses in this process instead of refusing them
   * (`switchyard start`: one process is the whole system; not durable across a restart).
   */
  readonly backgroundInProcess?: boolean;
}

/** The gateway's own region: SWITCHYARD_REGION, else the first of regions.yaml. Checked before anything starts. */
export function resolveRegion(settings: Settings, topology: Topology): RegionSpec {
  const regionId = settings.region ?? topology.regions.keys().next().value;
  const region = regionId === undefined ? undefined : topology.regions.get(regionId);
  if (region === undefined) {
    throw new ConfigError('settings', [
      { path: 'SWITCHYARD_REGION', message: `unknown region "${regionId ?? ''}"; known: ${[...topology.regions.keys()].join(', ')}` },
    ]);
  }
  return region;
}

/** Standalone neighbour regions, spilled to by forwarding with the region token; undefined when none. */
function peersFor(settings: Settings, fleet: Fleet, region: string, registry: Registry, log: Logger): RegionPeers | undefined {
  const peerRegions = fleet.peersFrom(region);
  if (peerRegions.length > 0 && settings.regionToken === undefined) {
    log.warn({ regions: peerRegions.map((p) => p.region.id) }, 'regions.yaml gives other regions a gateway, but SWITCHYARD_REGION_TOKEN is unset: no spill to them');
  }
  if (settings.regionToken === undefined || peerRegions.length === 0) return undefined;
  return new RegionPeers({
    peers: peerRegions,
    token: settings.regionToken,
    intervalMs: settings.regionSummaryMs,
    connectTimeoutMs: settings.connectTimeoutMs,
    idleTimeoutMs: settings.idleTimeoutMs,
    log: log.child({ module: 'region-peers' }),
    registry,
  });
}

/** The limiter of a standalone region that is not the limits home; undefined elsewhere. */
function leasedLimiter(settings: Settings, topology: Topology, region: string, services: GatewayServices, peers: RegionPeers | undefined, log: Logger): RateLimiter | undefined {
  const home = topology.limitsHome === region ? undefined : peers?.peer(topology.limitsHome);
  if (home === undefined || peers === undefined || services.redis === undefined) return undefined;
  const limiterLog = log.child({ module: 'rate-limiter' });
  const slices = new LeasedRateLimiter({ redis: services.redis, keyPrefix: settings.redisPrefix, source: peers.slicesFrom(home, region), log: limiterLog });
  return new ResilientRateLimiter(slices, { mode: settings.rateLimitFailure, log: limiterLog });
}

/** Wires the gateway's components and listens. Stop order is the reverse of start order. */
export async function startGateway(opts: GatewayOptions): Promise<GatewayHandle> {
  const { settings, topology, logger } = opts;
  const region = resolveRegion(settings, topology);
  const log = logger.child({ module: 'gateway', region: region.id });
  const registry = opts.registry ?? createRegistry('gateway', packageVersion());
  const { services } = opts;
  services.registerMetrics?.(registry);
  const stack = new UpstreamStack({ settings, topology, registry, log, services });
  const { fleet, metrics, pools, proxy } = stack;
  const rateLimited = new Counter({
    name: 'switchyard_rate_limited_total',
    help: 'Requests refused with 429 because their API key was over a limit, by reason (requests, tokens, concurrency).',
    labelNames: ['reason'],
    registers: [registry],
  });
  if (services.limiterErrors !== undefined) {
    counterFrom(
      registry,
      'switchyard_rate_limiter_errors_total',
      'Rate-limit checks that failed because the limiter store (Redis) was unreachable.',
      services.limiterErrors.bind(services),
    );
  }
  const keyCache =
    settings.auth === 'keys'
      ? new KeyCache(services.keyStore, { ttlMs: settings.keyCacheTtlMs, pollMs: 1000, log: log.child({ module: 'key-cache' }) })
      : undefined;
  const peers = peersFor(settings, fleet, region.id, registry, log);
  // Standalone regions other than the limits home admit against slices leased from it.
  const leased = settings.auth === 'keys' ? leasedLimiter(settings, topology, region.id, services, peers, log) : undefined;
  const accounting = new RequestAccounting({
    limiter: settings.auth === 'keys' ? (leased ?? services.limiter) : undefined,
    buffer: services.usageBuffer,
    region: region.id,
    log,
    onRateLimited: (reason) => rateLimited.inc({ reason }),
  });

  // Response ids name their region: a conversation continues in any region's gateway.
  const responseStore = peers === undefined ? services.responses : new RegionalResponseStore(services.responses, peers, region.id);
  const runner = new ResponseRunner(stack, responseStore, settings);
  let jobs: JobQueue | undefined;
  let events: EventLog | undefined;
  if (redisConfigured(settings)) {
    const queue = new BackgroundJobs({
      redis: settings,
      redisPrefix: settings.redisPrefix,
      region: region.id,
      attempts: settings.jobAttempts,
      log,
      stillQueued: async (id) => (await services.responses.get(id))?.status === 'queued',
    });
    queue.watchWorkers({ graceMs: settings.workerGraceMs, log: log.child({ module: 'background-jobs' }) });
    jobs = queue;
    events = new RedisEventLog(settings, settings.redisPrefix, log);
  } else if (opts.backgroundInProcess === true) {
    events = new MemoryEventLog();
    jobs = new InProcessJobs(
      { region: region.id, route: () => fleet.routeFrom(region.id), store: services.responses, runner, usage: services.usageBuffer, events, log: log.child({ module: 'background' }) },
      { concurrency: settings.workerConcurrency, attempts: settings.jobAttempts },
    );
    log.warn('background responses run in this process (no REDIS_URL): not durable, a restart fails the ones waiting or running');
  }
  const backgroundJobs = jobs;
  new Gauge({
    name: 'switchyard_background_workers',
    help: "Workers serving this gateway's region background queue as last seen (BullMQ's worker registry; 1 when this process runs them itself); absent when unknown or without background responses.",
    labelNames: ['region'],
    registers: [registry],
    collect() {
      const count = backgroundJobs?.workerCount();
      if (count !== undefined) this.set({ region: region.id }, count);
    },
  });
  // Without Redis the responses live in this process's memory: this process archives them too.
  const archiver =
    !redisConfigured(settings) ? new ConversationArchiver(services.responses, settings.conversationIdleMs, log.child({ module: 'archiver' })) : undefined;

  const internal =
    settings.regionToken === undefined
      ? undefined
      : {
          token: settings.regionToken,
          summary: () => summarise(fleet, region.id, stack.policy, (model) => stack.gate.waitingFor(model, region.id), Date.now()),
          response: (id: string) => services.responses.get(id),
          // The limits home lends slices of the same buckets its own requests are admitted against.
          limits:
            topology.limitsHome === region.id && services.redis !== undefined
              ? new RedisRateLimiter({ redis: services.redis, keyPrefix: settings.redisPrefix })
              : undefined,
        };

  let accepting = true;
  const app = buildApp(
    {
      settings,
      region,
      fleet,
      proxy,
      streams: stack.streams,
      peers,
      internal,
      policy: stack.policy,
      waitingFor: (model, r) => stack.gate.waitingFor(model, r),
      metrics,
      registry,
      accounting,
      costs: stack.costs,
      responses: { store: responseStore, runner, jobs, events, peers },
      keyCache,
      admin:
        settings.adminToken === undefined
          ? undefined
          : { token: settings.adminToken, keys: services.keyStore, usage: services.usageStore, nodes: services.nodeStore, fleet },
      isAccepting: () => accepting,
      recordResponse: (route, status, elapsedMs, call) => {
        metrics.recordResponse(route, status, elapsedMs);
        // Only configured models become label values: a request for an unknown one is not a new series.
        if (call?.model !== undefined && fleet.knowsModel(region.id, call.model)) {
          const served = call.nodeId === undefined ? undefined : fleet.nodes.get(call.nodeId);
          metrics.countModelRequest(call.model, served?.spec.regionId ?? region.id, status);
        }
      },
    },
    log,
  );

  await stack.start();
  peers?.start();
  archiver?.start();
  keyCache?.start();
  if (settings.auth === 'none') {
    log.warn({ host: settings.host }, 'auth is off (SWITCHYARD_AUTH=none): /v1 accepts requests without an API key');
  }
  if (settings.adminToken === undefined) log.info('admin API off: set SWITCHYARD_ADMIN_TOKEN to enable /admin/v1');
  // A deep accept queue: thousands of clients may connect at once (a burst of streams), and a full
  // queue drops their SYNs, which they see as connect timeouts. The kernel caps it at somaxconn.
  await app.listen({ host: settings.host, port: settings.port, backlog: 16_384 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : settings.port;
  const url = `http://${settings.host.includes(':') ? `[${settings.host}]` : settings.host}:${port}`;
  // The fleet has read the registry by now: registered nodes count, not only the declared ones.
  log.info({ url, nodes: fleet.nodes.size, declared: topology.nodes.length, policy: stack.policyName }, 'gateway listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close: () =>
      (closing ??= (async () => {
        accepting = false;
        // Clients following background responses resume on another replica (starting_after).
        events?.release();
        stack.stopBackground();
        peers?.stop();
        await archiver?.stop();
        keyCache?.stop();
        // Open streams get the grace period; then the upstream pools are destroyed, which ends
        // every relay with an error event, and the remaining client connections are cut.
        let hardCut: NodeJS.Timeout | undefined;
        const cut = setTimeout(() => {
          log.warn({ graceMs: settings.shutdownGraceMs }, 'grace period over; cutting open requests');
          // Destroying the pools fails every open upstream body: each relay then sends its client
          // an error event and ends. Connections still open a second later are dropped.
          void pools.destroy();
          void peers?.destroy();
          hardCut = setTimeout(() => app.server.closeAllConnections(), 1000);
        }, settings.shutdownGraceMs);
        // server.close() drops only the connections idle at that moment; a keep-alive connection
        // whose stream ends later would hold shutdown for its whole keep-alive timeout.
        const sweep = setInterval(() => app.server.closeIdleConnections(), 50);
        try {
          await app.close();
        } finally {
          clearTimeout(cut);
          clearTimeout(hardCut);
          clearInterval(sweep);
          // In-process background runs are aborted (and marked failed) before their pools close.
          await jobs?.close();
          await pools.close(0);
          await peers?.close();
          await leased?.close();
          await events?.close();
        }
        log.info('gateway stopped');
      })()),
  };
}
