import type { Settings } from '../core/config/settings.js';
import type { RegionSpec, Topology } from '../core/config/topology.js';
import { ConfigError } from '../core/config/config-error.js';
import type { Logger } from '../core/logger.js';
import { createRegistry, type Registry } from '../core/metrics.js';
import { packageVersion } from '../core/version.js';
import { Fleet } from '../scheduler/fleet.js';
import { DEFAULT_PLACEMENT_OPTIONS, ExpectedCompletionPolicy } from '../scheduler/placement/expected-completion.js';
import type { CapacityLedger } from '../scheduler/capacity/ledger.js';
import { CostEstimator } from '../scheduler/capacity/cost-estimator.js';
import { CapacityGate } from './capacity/capacity-gate.js';
import { CapacityMetrics } from './capacity/capacity-metrics.js';
import { Counter } from 'prom-client';
import type { RateLimiter } from '../core/ratelimit/rate-limiter.js';
import type { KeyStore } from '../core/storage/key-store.js';
import type { NodeStore } from '../core/storage/node-store.js';
import type { LiveState } from '../core/storage/live-state.js';
import { FleetSync } from './fleet-sync.js';
import type { UsageBuffer } from '../core/storage/usage-buffer.js';
import type { UsageStore } from '../core/storage/usage-store.js';
import { KeyCache } from './auth/key-cache.js';
import { RequestAccounting } from './usage/accounting.js';
import { buildApp } from './app.js';
import { GatewayMetrics } from './gateway-metrics.js';
import { NodeHealth } from './upstream/node-health.js';
import { UpstreamProxy } from './upstream/proxy.js';
import { UpstreamPools } from './upstream/upstream-pools.js';

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
  limiterErrors?(): number;
  ledgerErrors?(): number;
}

export interface GatewayOptions {
  readonly settings: Settings;
  readonly topology: Topology;
  readonly logger: Logger;
  readonly services: GatewayServices;
  /** The process's registry when other components share it (`switchyard start`). */
  readonly registry?: Registry;
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

/** Wires the gateway's components and listens. Stop order is the reverse of start order. */
export async function startGateway(opts: GatewayOptions): Promise<GatewayHandle> {
  const { settings, topology, logger } = opts;
  const region = resolveRegion(settings, topology);
  const log = logger.child({ module: 'gateway', region: region.id });
  // A registered node whose agent has not reported for `staleAfterIntervals` gets no traffic.
  const fleet = new Fleet(topology, settings.staleAfterIntervals * settings.reportIntervalMs);
  const registry = opts.registry ?? createRegistry('gateway', packageVersion());
  const metrics = new GatewayMetrics(registry, fleet);
  const pools = new UpstreamPools(fleet, settings);
  const health = new NodeHealth(fleet, pools, settings, log.child({ module: 'node-health' }));
  const { services } = opts;
  const rateLimited = new Counter({
    name: 'switchyard_rate_limited_total',
    help: 'Requests refused with 429 because their API key was over a limit, by reason (requests, tokens, concurrency).',
    labelNames: ['reason'],
    registers: [registry],
  });
  const limiterErrors = services.limiterErrors;
  if (limiterErrors !== undefined) {
    new Counter({
      name: 'switchyard_rate_limiter_errors_total',
      help: 'Rate-limit checks that failed because the limiter store (Redis) was unreachable.',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(limiterErrors());
      },
    });
  }
  const keyCache =
    settings.auth === 'keys'
      ? new KeyCache(services.keyStore, { ttlMs: settings.keyCacheTtlMs, pollMs: 1000, log: log.child({ module: 'key-cache' }) })
      : undefined;
  const accounting = new RequestAccounting({
    limiter: settings.auth === 'keys' ? services.limiter : undefined,
    buffer: services.usageBuffer,
    region: region.id,
    log,
    onRateLimited: (reason) => rateLimited.inc({ reason }),
  });
  const ledgerErrors = services.ledgerErrors;
  if (ledgerErrors !== undefined) {
    new Counter({
      name: 'switchyard_capacity_ledger_errors_total',
      help: 'Capacity ledger calls that failed because its store (Redis) was unreachable; placement then used local accounting.',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(ledgerErrors());
      },
    });
  }
  const policy = new ExpectedCompletionPolicy({ ...DEFAULT_PLACEMENT_OPTIONS, horizonSeconds: settings.capacityHorizonSeconds });
  const gate = new CapacityGate(
    fleet,
    services.ledger,
    policy,
    { queueMax: settings.queueMax, syncIntervalMs: settings.capacitySyncMs, candidates: 3, sessionMemory: 100_000 },
    new CapacityMetrics(registry, fleet, settings.capacityHorizonSeconds),
    log.child({ module: 'capacity' }),
  );
  const proxy = new UpstreamProxy(gate, pools, health, metrics, settings, log);

  let accepting = true;
  const app = buildApp(
    {
      settings,
      region,
      fleet,
      proxy,
      metrics,
      registry,
      accounting,
      costs: new CostEstimator(settings.defaultMaxTokens),
      keyCache,
      admin:
        settings.adminToken === undefined
          ? undefined
          : { token: settings.adminToken, keys: services.keyStore, usage: services.usageStore, nodes: services.nodeStore, fleet },
      isAccepting: () => accepting,
      recordResponse: (route, status, elapsedMs) => metrics.recordResponse(route, status, elapsedMs),
    },
    log,
  );

  const fleetSync = new FleetSync(fleet, services.nodeStore, services.liveState, log.child({ module: 'fleet-sync' }));
  await fleetSync.start();
  await health.start();
  await gate.start();
  keyCache?.start();
  if (settings.auth === 'none') {
    log.warn({ host: settings.host }, 'auth is off (SWITCHYARD_AUTH=none): /v1 accepts requests without an API key');
  }
  if (settings.adminToken === undefined) log.info('admin API off: set SWITCHYARD_ADMIN_TOKEN to enable /admin/v1');
  await app.listen({ host: settings.host, port: settings.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : settings.port;
  const url = `http://${settings.host.includes(':') ? `[${settings.host}]` : settings.host}:${port}`;
  log.info({ url, nodes: topology.nodes.length, policy: policy.name }, 'gateway listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close: () =>
      (closing ??= (async () => {
        accepting = false;
        gate.stop();
        health.stop();
        fleetSync.stop();
        keyCache?.stop();
        // Open streams get the grace period; then the upstream pools are destroyed, which ends
        // every relay with an error event, and the remaining client connections are cut.
        let hardCut: NodeJS.Timeout | undefined;
        const cut = setTimeout(() => {
          log.warn({ graceMs: settings.shutdownGraceMs }, 'grace period over; cutting open requests');
          // Destroying the pools fails every open upstream body: each relay then sends its client
          // an error event and ends. Connections still open a second later are dropped.
          void pools.destroy();
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
          await pools.close(0);
        }
        log.info('gateway stopped');
      })()),
  };
}
