import type { ExpectedCompletionPolicy } from '../../scheduler/placement/expected-completion.js';
import type { Fleet } from '../../scheduler/fleet.js';
import type { NodeState } from '../../scheduler/node-state.js';

/** One model's capacity in a region, as its gateways see it: what another region plans a spill with. */
export interface ModelSummary {
  /** Available nodes serving the model. */
  readonly nodes: number;
  /** Sequence slots and work tokens the region's ledger can still reserve on them. */
  readonly headroomSequences: number;
  readonly headroomTokens: number;
  /** Requests waiting for capacity in the region's admission queue for the model. */
  readonly queued: number;
  /**
   * The node a request would most likely get (headroom, least work ahead): seconds of work
   * already reserved on it, its per-sequence speed (tokens/s) and the engine's load factor, so
   * that a remote gateway computes the expected finish of its own request the way placement does.
   */
  readonly best: { readonly queueSeconds: number; readonly perSequenceTokensPerSecond: number; readonly loadFactor: number } | null;
}

export interface RegionSummary {
  readonly region: string;
  /** The serving gateway's clock when it was made (ms since the epoch). */
  readonly atMs: number;
  readonly models: Readonly<Record<string, ModelSummary>>;
}

/**
 * The summary of `region`'s own nodes, from this gateway's ledger view (no network call): what
 * `/internal/v1/summary` answers to the other regions' gateways about once a second.
 */
export function summarise(fleet: Fleet, region: string, policy: ExpectedCompletionPolicy, waiting: (model: string) => number, now: number): RegionSummary {
  const horizon = policy.options.horizonSeconds;
  const byModel = new Map<string, { nodes: number; seqs: number; tokens: number; best: NodeState | undefined; bestQueue: number }>();
  const own = fleet.routeFrom(region).find((hop) => hop.region.id === region);
  for (const node of own?.nodes ?? []) {
    if (!node.isAvailable(now)) continue;
    const seqs = Math.max(0, node.spec.maxSequences - node.reservedSequences);
    const tokens = Math.max(0, node.tokenBudget(horizon) - node.reservedTokens);
    const fits = node.hasHeadroom(0, horizon, now);
    const queue = node.reservedTokens / node.tokensPerSecond;
    for (const model of node.spec.models) {
      const m = byModel.get(model) ?? { nodes: 0, seqs: 0, tokens: 0, best: undefined, bestQueue: Infinity };
      m.nodes += 1;
      m.seqs += seqs;
      m.tokens += tokens;
      if (fits && queue < m.bestQueue) {
        m.best = node;
        m.bestQueue = queue;
      }
      byModel.set(model, m);
    }
  }
  const models: Record<string, ModelSummary> = {};
  for (const [model, m] of byModel) {
    models[model] = {
      nodes: m.nodes,
      headroomSequences: m.seqs,
      headroomTokens: m.tokens,
      queued: waiting(model),
      best:
        m.best === undefined
          ? null
          : { queueSeconds: m.bestQueue, perSequenceTokensPerSecond: m.best.tokensPerSecond / m.best.spec.maxSequences, loadFactor: m.best.loadFactor() },
    };
  }
  return { region, atMs: now, models };
}

/** Seconds until a request of `cost` tokens would finish in a summarised region, `rttMs` away. */
export function expectedRemoteSeconds(m: ModelSummary, rttMs: number, cost: number): number {
  if (m.best === null || m.queued > 0) return Infinity;
  return rttMs / 1000 + (m.best.queueSeconds + cost / m.best.perSequenceTokensPerSecond) * m.best.loadFactor;
}
