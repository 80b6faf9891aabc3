import type { NodeState } from '../node-state.js';
import { isEligible, type PlacementPolicy, type PlacementRequest } from './policy.js';

/**
 * Region first, then least work per unit of capacity.
 *
 * Regions are tried nearest first; a region is used while one of its eligible nodes has a free
 * sequence slot (in-flight below its declared `maxSequences`). Within the region the node with the
 * lowest (outstanding tokens + this request's cost) / tokens per second (learned, else declared) wins: the time the
 * node needs to drain its work, so a node with ten times the capacity takes ten times the load.
 * When every region is full, the least-loaded node of the nearest region that has any eligible node
 * takes the request (it waits in the engine). Issue 2's policy, kept as a baseline: the gateway uses
 * `ExpectedCompletionPolicy` with the capacity ledger and admission queue.
 */
export class LeastWorkPolicy implements PlacementPolicy {
  readonly name = 'least-work';

  choose(req: PlacementRequest): NodeState | undefined {
    let fallback: NodeState | undefined;
    for (const hop of req.route) {
      let best: NodeState | undefined;
      let bestScore = Infinity;
      let bestAny: NodeState | undefined;
      let bestAnyScore = Infinity;
      for (const node of hop.nodes) {
        if (!isEligible(node, req)) continue;
        const score = ((node.outstandingTokens + req.costTokens) / node.tokensPerSecond) * node.loadFactor();
        if (score < bestAnyScore) {
          bestAny = node;
          bestAnyScore = score;
        }
        if (node.inflight < node.spec.maxSequences && score < bestScore) {
          best = node;
          bestScore = score;
        }
      }
      if (best !== undefined) return best;
      fallback ??= bestAny;
    }
    return fallback;
  }
}
