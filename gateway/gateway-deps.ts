import type { Settings } from '../core/config/settings.js';
import type { RegionSpec } from '../core/config/topology.js';
import type { Registry } from '../core/metrics.js';
import type { Fleet } from '../scheduler/fleet.js';
import type { CallContext } from './request-context.js';
import type { CostEstimator } from '../scheduler/capacity/cost-estimator.js';
import type { GatewayMetrics } from './gateway-metrics.js';
import type { UpstreamProxy } from './upstream/proxy.js';
import type { OpenStreams } from './upstream/open-streams.js';
import type { RegionPeers } from './regions/region-peers.js';
import type { InternalDeps } from './routes/internal/internal-routes.js';
import type { ExpectedCompletionPolicy } from '../scheduler/placement/expected-completion.js';
import type { RequestAccounting } from './usage/accounting.js';
import type { KeyCache } from './auth/key-cache.js';
import type { AdminDeps } from './routes/admin/admin-routes.js';
import type { ResponsesDeps } from './routes/v1/responses.js';

/** Everything the HTTP layer needs; built by `main`, passed to `buildApp`. */
export interface GatewayDeps {
  readonly settings: Settings;
  readonly region: RegionSpec;
  readonly fleet: Fleet;
  readonly proxy: UpstreamProxy;
  /** Streams open to each node, ended when it is declared down. */
  readonly streams: OpenStreams;
  readonly metrics: GatewayMetrics;
  readonly registry: Registry;
  readonly accounting: RequestAccounting;
  /** Token cost of a request before the engine sees it, learned from real usage. */
  readonly costs: CostEstimator;
  /** Present when auth is `keys`. */
  readonly keyCache: KeyCache | undefined;
  /** The Responses API: its store, the runner, and background jobs when Redis is configured. */
  readonly responses: ResponsesDeps;
  /** Standalone neighbour regions to spill to (regions.yaml `gateway` and a region token). */
  readonly peers: RegionPeers | undefined;
  /** Present with a region token: `/internal/v1` for the other regions' gateways. */
  readonly internal: InternalDeps | undefined;
  /** Placement arithmetic (expected completion), for the spill decision. */
  readonly policy: ExpectedCompletionPolicy;
  /** Requests waiting for capacity for a model in a region's queue. */
  waitingFor(model: string, region: string): number;
  /** Present when the admin API is on (an admin token is set). */
  readonly admin: AdminDeps | undefined;
  /** Counts a finished request (hijacked streams report here; others via the onResponse hook). */
  recordResponse(route: string, status: number, elapsedMs: number, call: CallContext | undefined): void;
  /** False once shutdown began: /readyz turns 503 so load balancers drain this replica. */
  isAccepting(): boolean;
}
