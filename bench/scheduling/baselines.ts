import type { NodeState } from '../../scheduler/node-state.js';
import { isEligible, type PlacementPolicy, type PlacementRequest } from '../../scheduler/placement/policy.js';

/** Baselines the issue compares against, over the same NodeState the real policy sees. */
function eligible(req: PlacementRequest): NodeState[] {
  return (req.route[0]?.nodes ?? []).filter((n) => isEligible(n, req));
}

export class LeastConnectionsPolicy implements PlacementPolicy {
  readonly name = 'least-connections';
  choose(req: PlacementRequest): NodeState | undefined {
    return eligible(req).reduce<NodeState | undefined>((best, n) => (best === undefined || n.inflight < best.inflight ? n : best), undefined);
  }
}

/** Power of two choices on in-flight requests, with a seeded generator for repeatable runs. */
export class PowerOfTwoPolicy implements PlacementPolicy {
  readonly name = 'power-of-two';
  constructor(private seed = 7) {}
  private random(): number {
    this.seed = (this.seed * 1103515245 + 12345) % 2 ** 31;
    return this.seed / 2 ** 31;
  }
  choose(req: PlacementRequest): NodeState | undefined {
    const nodes = eligible(req);
    const a = nodes[Math.floor(this.random() * nodes.length)];
    const b = nodes[Math.floor(this.random() * nodes.length)];
    if (a === undefined || b === undefined) return a ?? b;
    return a.inflight <= b.inflight ? a : b;
  }
}

/** Smooth weighted round robin (nginx's), weights = declared tokens/s. */
export class WeightedRoundRobinPolicy implements PlacementPolicy {
  readonly name = 'weighted-round-robin';
  private readonly current = new Map<NodeState, number>();
  choose(req: PlacementRequest): NodeState | undefined {
    const nodes = eligible(req);
    const total = nodes.reduce((s, n) => s + n.spec.tokensPerSecond, 0);
    let best: NodeState | undefined;
    for (const n of nodes) {
      const w = (this.current.get(n) ?? 0) + n.spec.tokensPerSecond;
      this.current.set(n, w);
      if (best === undefined || w > (this.current.get(best) ?? 0)) best = n;
    }
    if (best !== undefined) this.current.set(best, (this.current.get(best) ?? 0) - total);
    return best;
  }
}
