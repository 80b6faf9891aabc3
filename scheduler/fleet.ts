import type { RegionSpec, Topology } from '../core/config/topology.js';
import { NodeState } from './node-state.js';

/** Regions of one residency group, nearest first, as seen from one origin region. */
export interface RegionRoute {
  readonly region: RegionSpec;
  readonly rttMs: number;
  readonly nodes: readonly NodeState[];
}

/**
 * The live fleet as one gateway sees it: node states plus, per origin region, the ordered list
 * of regions a request may be served from. Orders are computed once, so placement does no
 * sorting or filtering by residency per request.
 */
export class Fleet {
  readonly nodes: ReadonlyMap<string, NodeState>;
  private readonly routes = new Map<string, readonly RegionRoute[]>();
  /** Per origin region: the models some node within its residency group serves. */
  private readonly modelsByOrigin = new Map<string, ReadonlySet<string>>();

  constructor(readonly topology: Topology) {
    const nodes = new Map<string, NodeState>();
    for (const spec of topology.nodes) nodes.set(spec.id, new NodeState(spec));
    this.nodes = nodes;
    for (const origin of topology.regions.values()) {
      const route = [...topology.regions.values()]
        .filter((r) => r.residency === origin.residency)
        .map((region) => ({
          region,
          rttMs: topology.rttMs(origin.id, region.id),
          nodes: [...nodes.values()].filter((n) => n.spec.regionId === region.id),
        }))
        // Stable: equal distances keep file order, so routing is predictable.
        .sort((a, b) => a.rttMs - b.rttMs);
      this.routes.set(origin.id, route);
      this.modelsByOrigin.set(origin.id, new Set(route.flatMap((hop) => hop.nodes.flatMap((n) => n.spec.models))));
    }
  }

  /** Regions reachable from `origin` without leaving its residency group, nearest first. */
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
