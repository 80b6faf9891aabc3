import type { RegionRoute } from '../fleet.js';
import type { NodeState } from '../node-state.js';

export interface PlacementRequest {
  readonly model: string;
  /** Estimated tokens, prompt plus output: the request's own run time is scored on these. */
  readonly costTokens: number;
  /**
   * What the request takes from a node's token budget in the ledger: output plus a tenth of the
   * prompt (see `workTokens`). Defaults to `costTokens`.
   */
  readonly workTokens?: number | undefined;
  /** Regions allowed, nearest first (already limited to the residency group). */
  readonly route: readonly RegionRoute[];
  /** Nodes already tried for this request (failed attempts); never chosen again. */
  readonly exclude: ReadonlySet<NodeState> | undefined;
  readonly now: number;
  /**
   * Session affinity: requests with the same key (x-session-id, `user`, a conversation id) prefer
   * the same node, whose prefix cache holds their history.
   */
  readonly affinityKey?: string | undefined;
  /** The node that served this session last, when this gateway remembers it. */
  readonly lastNode?: NodeState | undefined;
}

/** Chooses a node for one request, or none when no eligible node serves the model. */
export interface PlacementPolicy {
  readonly name: string;
  choose(req: PlacementRequest): NodeState | undefined;
}

export function isEligible(node: NodeState, req: PlacementRequest): boolean {
  return node.isAvailable(req.now) && node.serves(req.model) && !(req.exclude?.has(node) ?? false);
}
