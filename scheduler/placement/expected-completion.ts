import type { RegionRoute } from '../fleet.js';
import type { NodeState } from '../node-state.js';
import { isEligible, type PlacementPolicy, type PlacementRequest } from './policy.js';

export interface ExpectedCompletionOptions {
  /** A node's token budget in the ledger is its tokens/s × this many seconds. */
  readonly horizonSeconds: number;
  /**
   * Session affinity gives way when the session's node is expected to finish later than
   * `slack` × the best node's time (bounded load: a hot session cannot pile onto one node).
   */
  readonly affinitySlack: number;
}

export const DEFAULT_PLACEMENT_OPTIONS: ExpectedCompletionOptions = { horizonSeconds: 30, affinitySlack: 2 };

/** What `rank` found: the nodes with headroom, best first, and whether any eligible node exists. */
export interface Ranking {
  /** Eligible nodes with headroom, best first (at most the `max` asked for). */
  readonly nodes: NodeState[];
  /** Eligible nodes (serving the model, available, not excluded), headroom or not. */
  readonly eligible: number;
}

/**
 * Switchyard's placement: each eligible node with headroom is scored by the time the request is
 * expected to finish there, and the soonest wins.
 *
 *   expected = round trip to the node's region
 *            + (work already reserved on the node / its token capacity      — the queue ahead
 *               + the request's cost / the node's per-sequence speed)       — its own run
 *              × the engine's load factor (waiting requests, KV-cache pressure)
 *
 * Capacities are learned when known, else declared; reservations are the ledger's fleet-wide
 * totals as last seen, so the decision is arithmetic on local memory (no network call per node).
 * Because the round trip is part of the time, another region is used only when it is expected to
 * finish sooner, distance included; routes never leave the residency group.
 *
 * Nodes without headroom (no free sequence slot or token budget, or stale reports) are not
 * candidates: the request waits in the admission queue instead of overloading an engine.
 */
export class ExpectedCompletionPolicy implements PlacementPolicy {
  readonly name = 'switchyard';

  constructor(readonly options: ExpectedCompletionOptions = DEFAULT_PLACEMENT_OPTIONS) {}

  /** Seconds until a request of `cost` tokens would finish on `node`, `rttMs` away. */
  expectedSeconds(node: NodeState, rttMs: number, cost: number): number {
    const tps = node.tokensPerSecond;
    const perSequence = tps / node.spec.maxSequences;
    return rttMs / 1000 + (node.reservedTokens / tps + cost / perSequence) * node.loadFactor();
  }

  /**
   * The best `max` nodes with headroom, soonest first; the session's node first when affinity
   * holds. Allocates one small array per call; no sorting beyond an insertion into `max` slots.
   */
  rank(req: PlacementRequest, max: number): Ranking {
    const horizon = this.options.horizonSeconds;
    const work = req.workTokens ?? req.costTokens;
    const nodes: NodeState[] = [];
    const scores: number[] = [];
    let eligible = 0;
    // Session affinity: the node that served the session last, else the session's node by
    // capacity-weighted rendezvous hashing over the nearest region with eligible nodes (the same
    // on every gateway, with no shared state; a node gets sessions in proportion to its tokens/s).
    let preferred: NodeState | undefined;
    let preferredRtt = 0;
    let preferredRank = Infinity;
    let hashHop: RegionRoute | undefined;
    for (const hop of req.route) {
      for (const node of hop.nodes) {
        if (!isEligible(node, req)) continue;
        eligible++;
        if (req.affinityKey !== undefined) {
          if (req.lastNode !== undefined) {
            if (node === req.lastNode) {
              preferred = node;
              preferredRtt = hop.rttMs;
            }
          } else if (hashHop === undefined || hashHop === hop) {
            hashHop = hop;
            const r = weightedRendezvous(req.affinityKey, node.id, node.tokensPerSecond);
            if (r < preferredRank) {
              preferredRank = r;
              preferred = node;
              preferredRtt = hop.rttMs;
            }
          }
        }
        if (node.hasHeadroom(work, horizon, req.now)) {
          insert(nodes, scores, node, this.expectedSeconds(node, hop.rttMs, req.costTokens), max);
        }
      }
    }
    if (preferred !== undefined && nodes.length > 0 && preferred !== nodes[0] && preferred.hasHeadroom(work, horizon, req.now)) {
      if (this.expectedSeconds(preferred, preferredRtt, req.costTokens) <= (scores[0] as number) * this.options.affinitySlack) {
        const at = nodes.indexOf(preferred);
        if (at >= 0) nodes.splice(at, 1);
        else if (nodes.length >= max) nodes.pop();
        nodes.unshift(preferred);
      }
    }
    return { nodes, eligible };
  }

  choose(req: PlacementRequest): NodeState | undefined {
    return this.rank(req, 1).nodes[0];
  }
}

/** Keeps `nodes` sorted by score, at most `max` long. */
function insert(nodes: NodeState[], scores: number[], node: NodeState, score: number, max: number): void {
  let i = nodes.length;
  while (i > 0 && (scores[i - 1] as number) > score) i--;
  if (i >= max) return;
  nodes.splice(i, 0, node);
  scores.splice(i, 0, score);
  if (nodes.length > max) {
    nodes.pop();
    scores.pop();
  }
}

/**
 * Weighted rendezvous hashing (Schindelhauer & Schomaker): the node with the smallest
 * -ln(u) / weight wins, u a uniform hash of (key, node). Removing a node moves only its keys.
 */
export function weightedRendezvous(key: string, nodeId: string, weight: number): number {
  const u = (hash32(key, nodeId) + 0.5) / 4294967296;
  return -Math.log(u) / weight;
}

/** FNV-1a over key and node id, finalised with murmur3's mixer. */
function hash32(key: string, nodeId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ 0xff, 0x01000193);
  for (let i = 0; i < nodeId.length; i++) h = Math.imul(h ^ nodeId.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
