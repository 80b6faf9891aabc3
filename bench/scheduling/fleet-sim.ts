import type { NodeSpec } from '../../core/config/topology.js';
import type { RegionRoute } from '../../scheduler/fleet.js';
import { NodeState } from '../../scheduler/node-state.js';

/**
 * A discrete-time model of a heterogeneous GPU fleet under continuous batching, driven by the
 * real placement code. Each node runs up to `maxSequences` sequences; requests beyond the slots
 * wait inside the node, as in vLLM. Prefill and decode share the node's compute: a prefill token
 * costs 1/PREFILL_FACTOR of a decode token, decode runs at most PER_SEQUENCE_MAX_TPS per sequence,
 * and when a step asks for more than the node has, prefill and decode slow down in proportion
 * (a long prompt stalls the batch's decoding, as chunked prefill does). Prefills are served in
 * arrival order. Each node keeps a prefix cache of finished conversations (LRU, bounded in tokens):
 * a turn that starts on a node holding its conversation's history prefills only the rest.
 *
 * It is a model: no memory pressure, preemption or real kernels; its numbers are the model's.
 */
export interface SimNodeSpec {
  readonly id: string;
  readonly tokensPerSecond: number;
  readonly maxSequences: number;
  /** Tokens of finished conversations' history the node's prefix cache keeps. */
  readonly prefixCacheTokens: number;
}

export interface SimRequest {
  readonly arrivalMs: number;
  readonly promptTokens: number;
  readonly outputTokens: number;
  /** The conversation the request belongs to: its prefix-cache key (and affinity key, if used). */
  readonly conversation?: string | undefined;
}

/** A served request. TTFT counts from arrival, so time in an admission queue is included. */
export interface Outcome {
  readonly ttftMs: number;
  /** Mean time per output token after the first. */
  readonly tpotMs: number;
  readonly outputTokens: number;
}

export interface SimResult {
  readonly outcomes: Outcome[];
  /** Requests rejected at admission, plus turns never sent because their conversation was. */
  rejected: number;
  /** Prompt tokens of the requests that started, and how many of them came from a prefix cache. */
  promptTokens: number;
  cachedTokens: number;
}

/** Where requests come from: a fixed arrival list, or conversations whose next turn waits for the last. */
export interface RequestSource {
  /** Requests the source stands for in all (the denominator of SLO attainment). */
  readonly total: number;
  /** The next request due at or before `now`, in arrival order; undefined when none is. */
  next(now: number): SimRequest | undefined;
  /** `req` finished (served) or was rejected at `now`; returns how many requests will now never be sent. */
  settle(req: SimRequest, now: number, served: boolean): number;
}

/** What a dispatcher may do with the fleet. */
export interface Fleet {
  readonly route: readonly RegionRoute[];
  place(req: SimRequest, node: NodeState, charge: number): void;
  reject(req: SimRequest, now: number): void;
  /** The node that took the conversation's previous turn (what a gateway remembers). */
  lastNode(conversation: string): NodeState | undefined;
}

/** Places arriving requests, at once or through an admission queue. */
export interface Dispatcher {
  readonly name: string;
  arrive(fleet: Fleet, req: SimRequest, now: number): void;
  /** Called every step, after that step's completions. */
  pump(fleet: Fleet, now: number): void;
}

export const PER_SEQUENCE_MAX_TPS = 60;
export const PREFILL_FACTOR = 10;

interface Seq {
  readonly req: SimRequest;
  /** Tokens charged to the node's books at placement, given back at the end. */
  readonly charge: number;
  prefillLeft: number;
  decoded: number;
  firstTokenMs: number;
  credit: number;
}

interface SimNode {
  readonly state: NodeState;
  readonly cache: PrefixCache;
  /** Requests waiting inside the engine; `head` is the next to get a slot (no shift per step). */
  readonly waiting: Seq[];
  head: number;
  readonly running: Seq[];
}

/** LRU of conversations' cached history in tokens; a Map keeps insertion order, so the first key is the oldest. */
export class PrefixCache {
  private readonly entries = new Map<string, number>();
  private used = 0;
  constructor(private readonly capacity: number) {}

  /** Cached tokens of the conversation's history (0 when none), marking it recently used. */
  lookup(key: string): number {
    const tokens = this.entries.get(key);
    if (tokens === undefined) return 0;
    this.entries.delete(key);
    this.entries.set(key, tokens);
    return tokens;
  }

  store(key: string, tokens: number): void {
    this.used -= this.entries.get(key) ?? 0;
    this.entries.delete(key);
    if (tokens > this.capacity) return;
    this.entries.set(key, tokens);
    this.used += tokens;
    for (const [oldest, size] of this.entries) {
      if (this.used <= this.capacity) break;
      this.entries.delete(oldest);
      this.used -= size;
    }
  }
}

export interface SimOptions {
  readonly dtMs?: number;
  /** Simulated time after which the run stops; requests still open count as outside the SLO. */
  readonly limitMs: number;
}

export function simulate(nodes: readonly SimNodeSpec[], source: RequestSource, dispatcher: Dispatcher, options: SimOptions): SimResult {
  return new FleetSim(nodes, source).run(dispatcher, options.dtMs ?? 5, options.limitMs);
}

class FleetSim implements Fleet {
  readonly route: readonly RegionRoute[];
  private readonly nodes: SimNode[];
  private readonly byState = new Map<NodeState, SimNode>();
  private readonly last = new Map<string, NodeState>();
  private readonly result: SimResult = { outcomes: [], rejected: 0, promptTokens: 0, cachedTokens: 0 };

  constructor(specs: readonly SimNodeSpec[], private readonly source: RequestSource) {
    this.nodes = specs.map((n) => ({ state: new NodeState(spec(n)), cache: new PrefixCache(n.prefixCacheTokens), waiting: [], head: 0, running: [] }));
    for (const n of this.nodes) this.byState.set(n.state, n);
    this.route = [{ region: { id: 'r', name: 'r', residency: 'x', gateway: undefined }, rttMs: 0, nodes: this.nodes.map((n) => n.state) }];
  }

  run(dispatcher: Dispatcher, dtMs: number, limitMs: number): SimResult {
    for (let now = 0; now < limitMs && this.resolved() < this.source.total; now += dtMs) {
      for (let req = this.source.next(now); req !== undefined; req = this.source.next(now)) dispatcher.arrive(this, req, now);
      for (const node of this.nodes) this.step(node, now, dtMs);
      dispatcher.pump(this, now + dtMs);
    }
    return this.result;
  }

  /**
   * The gateway's books, exact here (one gateway): in-flight counts for the baselines and the
   * capacity ledger's reservations for Switchyard's policy, both charged what the dispatcher
   * says (the gateway charges the ledger work tokens: output plus a tenth of the prompt).
   */
  place(req: SimRequest, state: NodeState, charge: number): void {
    const node = this.byState.get(state);
    if (node === undefined) throw new Error(`unknown node ${state.id}`);
    state.reserve(charge);
    state.setReserved(state.reservedSequences + 1, state.reservedTokens + charge);
    if (req.conversation !== undefined) this.last.set(req.conversation, state);
    node.waiting.push({ req, charge, prefillLeft: 0, decoded: 0, firstTokenMs: 0, credit: 0 });
  }

  reject(req: SimRequest, now: number): void {
    this.result.rejected += 1 + this.source.settle(req, now, false);
  }

  lastNode(conversation: string): NodeState | undefined {
    return this.last.get(conversation);
  }

  private resolved(): number {
    return this.result.outcomes.length + this.result.rejected;
  }

  private step(node: SimNode, now: number, dtMs: number): void {
    this.admit(node);
    const { state, running } = node;
    // The agent's report, as gateways would see it.
    state.report = { running: running.length, waiting: node.waiting.length - node.head, kvCacheUsage: undefined, atMs: now };
    const seconds = dtMs / 1000;
    const cap = state.spec.tokensPerSecond;
    const prefillRate = cap * PREFILL_FACTOR;
    let prefillAsked = 0;
    let decoding = 0;
    for (const s of running) {
      if (s.prefillLeft > 0) prefillAsked += s.prefillLeft;
      else decoding++;
    }
    prefillAsked = Math.min(prefillAsked, prefillRate * seconds);
    // Seconds of compute the step asks for; beyond the step's length everything slows alike.
    const busy = (decoding * PER_SEQUENCE_MAX_TPS * seconds) / cap + prefillAsked / prefillRate;
    const share = busy > seconds ? seconds / busy : 1;
    let prefillBudget = prefillAsked * share;
    const perSequence = PER_SEQUENCE_MAX_TPS * seconds * share;
    let kept = 0;
    for (const s of running) {
      if (s.prefillLeft > 0) {
        const take = Math.min(s.prefillLeft, prefillBudget);
        prefillBudget -= take;
        s.prefillLeft -= take;
        // The first token comes out of the prefill's last step.
        if (s.prefillLeft <= 1e-9) {
          s.prefillLeft = 0;
          s.firstTokenMs = now + dtMs;
        }
      } else {
        s.credit += perSequence;
        const add = Math.floor(s.credit);
        s.credit -= add;
        s.decoded += add;
      }
      if (s.prefillLeft === 0 && s.decoded >= s.req.outputTokens - 1) this.finish(node, s, now + dtMs);
      else running[kept++] = s;
    }
    running.length = kept;
  }

  /** Free slots take waiting requests in order; each starts after what its node's cache holds. */
  private admit(node: SimNode): void {
    const max = node.state.spec.maxSequences;
    while (node.running.length < max && node.head < node.waiting.length) {
      const s = node.waiting[node.head++] as Seq;
      const key = s.req.conversation;
      // At least one prompt token is computed, so every request has a prefill step.
      const cached = key === undefined ? 0 : Math.min(node.cache.lookup(key), s.req.promptTokens - 1);
      s.prefillLeft = s.req.promptTokens - cached;
      this.result.promptTokens += s.req.promptTokens;
      this.result.cachedTokens += cached;
      node.running.push(s);
    }
    if (node.head > 1024 && node.head * 2 > node.waiting.length) {
      node.waiting.splice(0, node.head);
      node.head = 0;
    }
  }

  private finish(node: SimNode, s: Seq, end: number): void {
    const { req } = s;
    this.result.outcomes.push({
      ttftMs: s.firstTokenMs - req.arrivalMs,
      tpotMs: req.outputTokens > 1 ? (end - s.firstTokenMs) / (req.outputTokens - 1) : 0,
      outputTokens: req.outputTokens,
    });
    node.state.release(s.charge);
    node.state.setReserved(node.state.reservedSequences - 1, node.state.reservedTokens - s.charge);
    // The whole history (prompt and answer) stays cached for the conversation's next turn.
    if (req.conversation !== undefined) node.cache.store(req.conversation, req.promptTokens + req.outputTokens);
    this.result.rejected += this.source.settle(req, end, true);
  }
}

function spec(n: SimNodeSpec): NodeSpec {
  return {
    id: n.id, regionId: 'r', clusterId: 'c', baseUrl: 'http://sim', origin: 'http://sim', pathPrefix: '', engine: 'sim',
    models: ['m'], tokensPerSecond: n.tokensPerSecond, maxSequences: n.maxSequences, headers: {}, sim: undefined,
  };
}
