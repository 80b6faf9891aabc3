import type { NodeSpec } from '../core/config/topology.js';
import type { GpuSummary } from '../core/storage/live-state.js';

/** A node's engine load as its agent last reported it. */
export interface EngineLoad {
  readonly running: number;
  readonly waiting: number;
  readonly kvCacheUsage: number | undefined;
  /** When the scheduler received it (ms since epoch). */
  readonly atMs: number;
  /** The agent could not reach the engine: no traffic until a report says otherwise. */
  readonly engineDown?: boolean;
  readonly gpu?: GpuSummary | undefined;
}

/**
 * What a gateway knows of one node right now. Mutable on purpose: it is updated on the hot path
 * (reserve/release per request) and must not allocate.
 */
export class NodeState {
  /** Result of the last active health check; unknown counts as healthy until the first probe. */
  healthy = true;
  /** Circuit breaker: the node gets no traffic until this time (ms since epoch). */
  ejectedUntil = 0;
  consecutiveFailures = 0;
  /** Requests this gateway has open on the node. */
  inflight = 0;
  /** Estimated tokens (prompt + max output) of the open requests. */
  outstandingTokens = 0;
  /**
   * The capacity ledger's totals for this node across every gateway (reserved sequences and
   * tokens), as last seen: refreshed from each ledger reply and a periodic snapshot. Placement
   * reads these; the ledger itself decides atomically.
   */
  reservedSequences = 0;
  reservedTokens = 0;
  /** Operator drain: no new requests; open ones finish. */
  draining = false;
  /** The agent's latest load report (registered nodes only). */
  report: EngineLoad | undefined;
  /** Capacity learned by the scheduler from the agent's token counter; declared until then. */
  learnedTokensPerSecond: number | undefined;

  /** The capacity placement plans with: learned when known, else declared. */
  get tokensPerSecond(): number {
    return this.learnedTokensPerSecond ?? this.spec.tokensPerSecond;
  }

  /**
   * @param requiresAgent registered nodes get traffic only while their agent's reports are fresh;
   *   nodes declared in regions.yaml run without an agent and rely on health checks alone.
   * @param staleAfterMs how old a report may be before the node counts as unavailable.
   */
  constructor(
    public spec: NodeSpec,
    readonly requiresAgent = false,
    private readonly staleAfterMs = 3000,
  ) {}

  get id(): string {
    return this.spec.id;
  }

  isAvailable(now: number): boolean {
    return (
      this.healthy && this.ejectedUntil <= now && !this.draining && this.report?.engineDown !== true && (!this.requiresAgent || this.isFresh(now))
    );
  }

  isFresh(now: number): boolean {
    return this.report !== undefined && now - this.report.atMs <= this.staleAfterMs;
  }

  /**
   * How much slower than its declared capacity the node will serve new work, from its engine's own
   * view: requests waiting inside the engine and a nearly full KV cache (which forces preemption).
   * 1 when nothing is known.
   */
  loadFactor(): number {
    const r = this.report;
    if (r === undefined) return 1;
    const queue = r.waiting / this.spec.maxSequences;
    const kv = r.kvCacheUsage === undefined || r.kvCacheUsage < 0.9 ? 0 : (r.kvCacheUsage - 0.9) * 10;
    return 1 + queue + kv;
  }

  /**
   * Token budget of the node in the ledger: what it generates in `horizonSeconds` at its
   * (learned) capacity. Reservations beyond it would wait inside the engine anyway.
   */
  tokenBudget(horizonSeconds: number): number {
    return this.tokensPerSecond * horizonSeconds;
  }

  /**
   * Whether a request of `cost` tokens fits in the ledger view: a free sequence slot and room in
   * the token budget (an idle node takes any single request, however large). A node whose agent
   * reported once and has since gone quiet counts as saturated.
   */
  hasHeadroom(cost: number, horizonSeconds: number, now: number): boolean {
    if (this.report !== undefined && !this.isFresh(now)) return false;
    if (this.reservedSequences >= this.spec.maxSequences) return false;
    return this.reservedSequences === 0 || this.reservedTokens + cost <= this.tokenBudget(horizonSeconds);
  }

  setReserved(sequences: number, tokens: number): void {
    this.reservedSequences = sequences;
    this.reservedTokens = tokens;
  }

  reserve(tokens: number): void {
    this.inflight += 1;
    this.outstandingTokens += tokens;
  }

  release(tokens: number): void {
    this.inflight -= 1;
    this.outstandingTokens -= tokens;
  }

  serves(model: string): boolean {
    return this.spec.models.includes(model);
  }
}
