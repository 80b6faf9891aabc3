import type { NodeSpec } from '../../core/config/topology.js';
import type { RegionRoute } from '../../scheduler/fleet.js';
import { NodeState } from '../../scheduler/node-state.js';
import type { PlacementPolicy } from '../../scheduler/placement/policy.js';

/**
 * A discrete-time model of a heterogeneous GPU fleet under continuous batching, driven by the
 * real placement code. Each node runs up to `maxSequences` sequences; a running sequence first
 * prefills its prompt (at 10× the decode capacity), then decodes at min(perSequenceMax,
 * capacity / running) tokens/s. Requests beyond the slots wait inside the node, as in vLLM.
 */
export interface SimNodeSpec {
  readonly id: string;
  readonly tokensPerSecond: number;
  readonly maxSequences: number;
}

export interface SimRequest {
  readonly arrivalMs: number;
  readonly promptTokens: number;
  readonly outputTokens: number;
}

export interface Outcome {
  readonly ttftMs: number;
  /** Mean time per output token after the first. */
  readonly tpotMs: number;
  readonly outputTokens: number;
}

interface Seq {
  req: SimRequest;
  prefillLeft: number;
  decoded: number;
  firstTokenMs: number | undefined;
  credit: number;
}

interface SimNode {
  readonly state: NodeState;
  readonly waiting: Seq[];
  readonly running: Seq[];
}

const PER_SEQUENCE_MAX_TPS = 60;
const PREFILL_FACTOR = 10;

export function simulate(nodes: readonly SimNodeSpec[], requests: readonly SimRequest[], policy: PlacementPolicy, dtMs = 5): Outcome[] {
  const sim: SimNode[] = nodes.map((n) => ({ state: new NodeState(spec(n)), waiting: [], running: [] }));
  const route: RegionRoute[] = [{ region: { id: 'r', name: 'r', residency: 'x' }, rttMs: 0, nodes: sim.map((s) => s.state) }];
  const byState = new Map(sim.map((s) => [s.state, s]));
  const outcomes: Outcome[] = [];
  let next = 0;
  const endMs = (requests.at(-1)?.arrivalMs ?? 0) + 600_000;
  for (let now = 0; now < endMs && outcomes.length < requests.length; now += dtMs) {
    for (; next < requests.length && (requests[next] as SimRequest).arrivalMs <= now; next++) {
      const req = requests[next] as SimRequest;
      const cost = req.promptTokens + req.outputTokens;
      const chosen = policy.choose({ model: 'm', costTokens: cost, route, exclude: undefined, now });
      if (chosen === undefined) throw new Error('no node');
      chosen.reserve(cost);
      byState.get(chosen)?.waiting.push({ req, prefillLeft: req.promptTokens, decoded: 0, firstTokenMs: undefined, credit: 0 });
    }
    for (const node of sim) step(node, now, dtMs, outcomes);
  }
  return outcomes;
}

function step(node: SimNode, now: number, dtMs: number, outcomes: Outcome[]): void {
  const cap = node.state.spec.tokensPerSecond;
  while (node.running.length < node.state.spec.maxSequences && node.waiting.length > 0) node.running.push(node.waiting.shift() as Seq);
  // The agent's report, as gateways would see it.
  node.state.report = { running: node.running.length, waiting: node.waiting.length, kvCacheUsage: undefined, atMs: now };
  const prefilling = node.running.filter((s) => s.prefillLeft > 0);
  const decoding = node.running.length - prefilling.length;
  const prefillBudget = (cap * PREFILL_FACTOR * dtMs) / 1000;
  for (const s of prefilling) {
    s.prefillLeft -= prefillBudget / prefilling.length;
    if (s.prefillLeft <= 0) s.firstTokenMs = now + dtMs;
  }
  const perSeq = decoding === 0 ? 0 : Math.min(PER_SEQUENCE_MAX_TPS, cap / decoding);
  for (let i = node.running.length - 1; i >= 0; i--) {
    const s = node.running[i] as Seq;
    if (s.prefillLeft > 0 || s.firstTokenMs === undefined) continue;
    s.credit += (perSeq * dtMs) / 1000;
    const add = Math.floor(s.credit);
    s.credit -= add;
    s.decoded += add;
    if (s.decoded >= s.req.outputTokens) {
      const end = now + dtMs;
      outcomes.push({
        ttftMs: s.firstTokenMs - s.req.arrivalMs,
        tpotMs: s.req.outputTokens > 1 ? (end - s.firstTokenMs) / (s.req.outputTokens - 1) : 0,
        outputTokens: s.req.outputTokens,
      });
      node.running.splice(i, 1);
      node.state.release(s.req.promptTokens + s.req.outputTokens);
    }
  }
}

function spec(n: SimNodeSpec): NodeSpec {
  return {
    id: n.id, regionId: 'r', clusterId: 'c', baseUrl: 'http://sim', origin: 'http://sim', pathPrefix: '', engine: 'sim',
    models: ['m'], tokensPerSecond: n.tokensPerSecond, maxSequences: n.maxSequences, headers: {}, sim: undefined,
  };
}
