import type { NodeSpec, RegionSpec, Topology } from '../core/config/topology.js';
import { NodeState } from './node-state.js';

/** A region that stands alone (regions.yaml `gateway`), reached by forwarding to its gateway. */
export interface PeerRegion {
  readonly region: RegionSpec;
  readonly gateway: string;
  readonly rttMs: number;
}

/** Regions of one residency group, nearest first, as seen from one origin region. */
export interface RegionRoute {
  readonly region: RegionSpec;
  readonly rttMs: number;
  readonly nodes: readonly NodeState[];
}

/** A registered node as the registry describes it now. */
export interface RegisteredNode {
  readonly spec: NodeSpec;
  readonly draining: boolean;
}

/**
 * The live fleet as one gateway sees it: node states plus, per origin region, the ordered list
 * of regions a request may be served from. Orders are recomputed only when the set of nodes
 * changes (registrations, removals), so placement does no sorting or filtering per request.
 * Nodes of regions.yaml are fixed; registered nodes come and go through `setRegistered`.
 */
export class Fleet {
  private readonly all = new Map<string, NodeState>();
  readonly staticIds: ReadonlySet<string>;
  private routes = new Map<string, readonly RegionRoute[]>();
  private peers = new Map<string, readonly PeerRegion[]>();
  /** Per origin region: the models some node within its residency group serves. */
  private modelsByOrigin = new Map<string, ReadonlySet<string>>();
  private readonly listeners: Array<(added: NodeState[], removed: NodeState[]) => void> = [];

  constructor(
    readonly topology: Topology,
    private readonly staleAfterMs = 3000,
  ) {
    for (const spec of topology.nodes) this.all.set(spec.id, new NodeState(spec));
    this.staticIds = new Set(this.all.keys());
    this.rebuild();
  }

  get nodes(): ReadonlyMap<string, NodeState> {
    return this.all;
  }

  /** Called with the nodes added and removed whenever the set changes (upstream pools follow). */
  onChange(listener: (added: NodeState[], removed: NodeState[]) => void): void {
    this.listeners.push(listener);
  }

  /**
   * Makes the registered nodes exactly `registered`: adds new ones, updates drain flags and specs
   * in place (open requests keep their NodeState), removes the rest. Static nodes are untouched.
   */
  setRegistered(registered: readonly RegisteredNode[]): void {
    const added: NodeState[] = [];
    const removed: NodeState[] = [];
    const seen = new Set<string>();
    let specsChanged = false;
    for (const { spec, draining } of registered) {
      if (this.staticIds.has(spec.id) || !this.topology.regions.has(spec.regionId)) continue;
      seen.add(spec.id);
      let state = this.all.get(spec.id);
      if (state === undefined) {
        state = new NodeState(spec, true, this.staleAfterMs);
        this.all.set(spec.id, state);
        added.push(state);
      } else if (JSON.stringify(state.spec) !== JSON.stringify(spec)) {
        state.spec = spec;
        specsChanged = true;
      }
      state.draining = draining;
    }
    for (const [id, state] of this.all) {
      if (!this.staticIds.has(id) && !seen.has(id)) {
        this.all.delete(id);
        removed.push(state);
      }
    }
    if (added.length > 0 || removed.length > 0 || specsChanged) {
      this.rebuild();
      for (const l of this.listeners) l(added, removed);
    }
  }

  private rebuild(): void {
    const routes = new Map<string, readonly RegionRoute[]>();
    const peers = new Map<string, readonly PeerRegion[]>();
    const models = new Map<string, ReadonlySet<string>>();
    for (const origin of this.topology.regions.values()) {
      // A region with its own gateway address stands alone: others never use its nodes directly
      // (its ledger and live state are in its own Redis), they forward to its gateway.
      const direct = (r: RegionSpec): boolean => r.id === origin.id || r.gateway === undefined;
      peers.set(
        origin.id,
        [...this.topology.regions.values()]
          .filter((r) => r.residency === origin.residency && !direct(r))
          .map((region) => ({ region, gateway: region.gateway as string, rttMs: this.topology.rttMs(origin.id, region.id) }))
          .sort((a, b) => a.rttMs - b.rttMs),
      );
      const route = [...this.topology.regions.values()]
        .filter((r) => r.residency === origin.residency && direct(r))
        .map((region) => ({
          region,
          rttMs: this.topology.rttMs(origin.id, region.id),
          nodes: [...this.all.values()].filter((n) => n.spec.regionId === region.id),
        }))
        // Stable: equal distances keep file order, so routing is predictable.
        .sort((a, b) => a.rttMs - b.rttMs);
      routes.set(origin.id, route);
      models.set(origin.id, new Set(route.flatMap((hop) => hop.nodes.flatMap((n) => n.spec.models))));
    }
    this.routes = routes;
    this.peers = peers;
    this.modelsByOrigin = models;
  }

  /** Standalone regions of `origin`'s residency group, reached by forwarding, nearest first. */
  peersFrom(origin: string): readonly PeerRegion[] {
    return this.peers.get(origin) ?? [];
  }

  /**
   * Regions whose nodes `origin`'s gateways use directly, without leaving its residency group,
   * nearest first: its own, and those of the group that do not stand alone.
   */
  routeFrom(origin: string): readonly RegionRoute[] {
    return this.routes.get(origin) ?? [];
  }

  region(id: string): RegionSpec | undefined {
    return this.topology.regions.get(id);
  }

  /** Whether any configured node (healthy or not) in `origin`'s residency group serves the model. */
  knowsModel(origin: string, model: string): boolean {
    return this.modelsByOrigin.get(origin)?.has(model) ?? false;
  }

  /** Models served by at least one available node in `origin`'s residency group, sorted. */
  availableModels(origin: string, now: number): string[] {
    const out = new Set<string>();
    for (const hop of this.routeFrom(origin)) {
      for (const node of hop.nodes) if (node.isAvailable(now)) for (const m of node.spec.models) out.add(m);
    }
    return [...out].sort();
  }
}
