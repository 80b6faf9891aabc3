import type { Settings } from '../core/config/settings.js';
import type { Topology } from '../core/config/topology.js';
import type { Logger } from '../core/logger.js';
import { counterFrom, type Registry } from '../core/metrics.js';
import type { LiveState } from '../core/storage/live-state.js';
import type { NodeStore } from '../core/storage/node-store.js';
import type { CapacityLedger } from '../scheduler/capacity/ledger.js';
import { CostEstimator } from '../scheduler/capacity/cost-estimator.js';
import { Fleet } from '../scheduler/fleet.js';
import { DEFAULT_PLACEMENT_OPTIONS, ExpectedCompletionPolicy } from '../scheduler/placement/expected-completion.js';
import { CapacityGate } from './capacity/capacity-gate.js';
import { CapacityMetrics } from './capacity/capacity-metrics.js';
import { OpenStreams, type NodeDownReason } from './upstream/open-streams.js';
import { FleetSync } from './fleet-sync.js';
import { GatewayMetrics } from './gateway-metrics.js';
import { NodeHealth } from './upstream/node-health.js';
import { UpstreamProxy } from './upstream/proxy.js';
import { UpstreamPools } from './upstream/upstream-pools.js';

/** The shared state a stack reads: the gateway's services and the worker's both provide it. */
export interface StackServices {
  readonly nodeStore: NodeStore;
  readonly liveState: LiveState;
  readonly ledger: CapacityLedger;
  ledgerErrors?(): number;
}

export interface UpstreamStackOptions {
  readonly settings: Settings;
  readonly topology: Topology;
  readonly registry: Registry;
  readonly log: Logger;
  readonly services: StackServices;
}

/**
 * Everything that sends requests to the fleet: the live fleet (regions.yaml plus registered nodes
 * and their agents' reports), one connection pool per node, health checks and circuit breakers,
 * the capacity gate over the shared ledger, and the retrying proxy. The gateway and the worker
 * (background responses) each build one, so both take capacity from the same ledger.
 */
export class UpstreamStack {
  readonly fleet: Fleet;
  readonly metrics: GatewayMetrics;
  readonly pools: UpstreamPools;
  readonly health: NodeHealth;
  readonly gate: CapacityGate;
  readonly proxy: UpstreamProxy;
  readonly costs: CostEstimator;
  readonly policyName: string;
  readonly policy: ExpectedCompletionPolicy;
  /** Streams open to each node: ended at once when the node is declared down. */
  readonly streams: OpenStreams;
  private readonly fleetSync: FleetSync;

  constructor(opts: UpstreamStackOptions) {
    const { settings, registry, log } = opts;
    // A registered node whose agent has not reported for `staleAfterIntervals` gets no traffic.
    this.fleet = new Fleet(opts.topology, settings.staleAfterIntervals * settings.reportIntervalMs);
    this.metrics = new GatewayMetrics(registry, this.fleet);
    this.pools = new UpstreamPools(this.fleet, settings);
    this.streams = new OpenStreams(registry);
    const nodeDown = (nodeId: string, reason: NodeDownReason): void => {
      const ended = this.streams.endAll(nodeId, reason);
      if (ended > 0) log.warn({ nodeId, reason, streams: ended }, 'node declared down: its open streams were ended');
    };
    this.health = new NodeHealth(this.fleet, this.pools, settings, log.child({ module: 'node-health' }), Date.now, (node) => nodeDown(node.id, 'health_probe'));
    const { services } = opts;
    if (services.ledgerErrors !== undefined) {
      counterFrom(
        registry,
        'switchyard_capacity_ledger_errors_total',
        'Capacity ledger calls that failed because its store (Redis) was unreachable; placement then used local accounting.',
        services.ledgerErrors.bind(services),
      );
    }
    const policy = new ExpectedCompletionPolicy({ ...DEFAULT_PLACEMENT_OPTIONS, horizonSeconds: settings.capacityHorizonSeconds });
    this.policyName = policy.name;
    this.policy = policy;
    this.gate = new CapacityGate(
      this.fleet,
      services.ledger,
      policy,
      { queueMax: settings.queueMax, syncIntervalMs: settings.capacitySyncMs, candidates: 3, sessionMemory: 100_000 },
      new CapacityMetrics(registry, this.fleet, settings.capacityHorizonSeconds),
      log.child({ module: 'capacity' }),
    );
    this.proxy = new UpstreamProxy(this.gate, this.pools, this.health, this.metrics, settings, log);
    this.costs = new CostEstimator(settings.defaultMaxTokens);
    this.fleetSync = new FleetSync(this.fleet, services.nodeStore, services.liveState, log.child({ module: 'fleet-sync' }), 1000, (id) =>
      nodeDown(id, 'engine_down'),
    );
  }

  async start(): Promise<void> {
    await this.fleetSync.start();
    await this.health.start();
    await this.gate.start();
  }

  /** Stops background work; the pools stay open for requests still running (close them after). */
  stopBackground(): void {
    this.gate.stop();
    this.health.stop();
    this.fleetSync.stop();
  }
}
