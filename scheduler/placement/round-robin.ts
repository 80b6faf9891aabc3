import type { NodeState } from '../node-state.js';
import { isEligible, type PlacementPolicy, type PlacementRequest } from './policy.js';

/**
 * Plain round robin over the nearest region that has an eligible node. Kept as the baseline that
 * tests and benchmarks compare against; it ignores capacity and load.
 */
export class RoundRobinPolicy implements PlacementPolicy {
  readonly name = 'round-robin';
  private next = 0;

  choose(req: PlacementRequest): NodeState | undefined {
    for (const hop of req.route) {
      const eligible = hop.nodes.filter((n) => isEligible(n, req));
      if (eligible.length > 0) return eligible[this.next++ % eligible.length];
    }
    return undefined;
  }
}
