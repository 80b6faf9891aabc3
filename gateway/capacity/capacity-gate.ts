import { randomBytes } from 'node:crypto';
import { ErrorCode, SwitchyardError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { FairQueue, type PriorityClass, type QueueEntry, type Ticket } from '../../scheduler/admission/fair-queue.js';
import type { CapacityLedger, HeldLease, LedgerNode } from '../../scheduler/capacity/ledger.js';
import type { Fleet, RegionRoute } from '../../scheduler/fleet.js';
import type { NodeState } from '../../scheduler/node-state.js';
import type { ExpectedCompletionPolicy } from '../../scheduler/placement/expected-completion.js';
import type { CancelSignal } from '../upstream/cancel-signal.js';
import type { CapacityMetrics } from './capacity-metrics.js';

export interface AdmissionRequest {
  readonly model: string;
  readonly route: readonly RegionRoute[];
  /** Prompt plus output tokens: the tenant's fair-share charge. */
  readonly costTokens: number;
  /** The request's load on a node in output-token equivalents: what the ledger reserves. */
  readonly workTokens: number;
  /** Nodes already tried for this request (failed attempts). */
  readonly exclude: ReadonlySet<NodeState> | undefined;
  readonly priority: PriorityClass;
  readonly tenant: string;
  readonly weight: number;
  /** Latest time (ms since epoch) the request may still be waiting for capacity. */
  readonly deadlineAt: number;
  readonly affinityKey: string | undefined;
  /** Aborted when the client goes away: the request leaves the queue at once. */
  readonly signal: CancelSignal;
}

/** Capacity held on one node for one request. `release` exactly once (extra calls do nothing). */
export interface CapacityGrant {
  readonly node: NodeState;
  /** How long the request waited in the admission queue, ms (0 when placed at once). */
  readonly waitedMs: number;
  release(): void;
}

export interface GateSettings {
  /** Most requests waiting per (model, region) queue; beyond it 503 at once. */
  readonly queueMax: number;
  /** How often the ledger view is refreshed and waiting queues retried, ms. */
  readonly syncIntervalMs: number;
  /** Candidates sent to the ledger per attempt: it grants the first that still has room. */
  readonly candidates: number;
  /** Sessions remembered for affinity (least recently used ones are forgotten). */
  readonly sessionMemory: number;
}

interface Waiter extends QueueEntry {
  readonly req: AdmissionRequest;
  readonly queue: ModelQueue;
  readonly enqueuedAt: number;
  ticket: Ticket<Waiter> | undefined;
  timer: NodeJS.Timeout | undefined;
  resolve(grant: CapacityGrant): void;
  reject(error: Error): void;
  onAbort(): void;
}

interface ModelQueue {
  readonly model: string;
  readonly region: string;
  readonly waiting: FairQueue<Waiter>;
  pumping: boolean;
  again: boolean;
}

const NO_NODE = 0;
const FULL = 1;
type PlaceResult = CapacityGrant | typeof NO_NODE | typeof FULL;

/**
 * The gateway's admission control. A request is placed at once when a node has headroom in the
 * capacity ledger (shared by every gateway) and nobody is waiting for its model; otherwise it
 * waits in a queue per model and origin region, ordered by priority class and then fair share
 * between tenants in tokens, until capacity frees up, its deadline passes (503 `no_capacity`
 * with a Retry-After estimated from the queue) or its client goes away.
 *
 * Placement itself is arithmetic on the local ledger view (`ExpectedCompletionPolicy.rank`); the
 * one network call is the ledger's atomic reserve over the best few candidates. Leases of running
 * requests are renewed every third of their TTL, so a gateway that dies frees its capacity within
 * one TTL.
 *
 * The gateway knows its own open leases (node and cost), so a ledger that lost them (Redis
 * restarted empty, or they expired while Redis was unreachable) is rebuilt from them: when a
 * snapshot or a reserve reports fewer sequences on a node than this gateway alone holds there,
 * the leases are renewed at once, and renewal takes a lost lease again. Every gateway does the
 * same, so the totals are whole again within one sync interval of the first sign (a second when
 * nobody waits), and at the latest at the next renewal.
 */
export class CapacityGate {
  private readonly queues = new Map<string, ModelQueue>();
  private readonly leases = new Map<string, HeldLease>();
  /** Open leases per node, to notice a ledger that has fewer than this gateway alone holds. */
  private readonly heldOn = new Map<string, number>();
  /** A renewal in flight (timer or rebuild), shared. */
  private renewing: Promise<void> | undefined;
  private readonly sessions = new Map<string, NodeState>();
  private readonly leasePrefix = randomBytes(6).toString('hex');
  private leaseCounter = 0;
  private syncTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private lastSnapshotAt = 0;
  /** The ledger snapshot in flight, shared by everyone who needs the view refreshed meanwhile. */
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly fleet: Fleet,
    private readonly ledger: CapacityLedger,
    private readonly policy: ExpectedCompletionPolicy,
    private readonly settings: GateSettings,
    private readonly metrics: CapacityMetrics,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    metrics.watchQueues(() => this.queues.values());
  }

  async start(): Promise<void> {
    await this.sync(true);
    this.syncTimer = setInterval(() => void this.sync(false), this.settings.syncIntervalMs);
    this.syncTimer.unref();
    this.renewTimer = setInterval(() => void this.renewLeases('renew'), Math.max(100, this.ledger.leaseTtlMs / 3));
    this.renewTimer.unref();
  }

  /** Stops the timers. Waiting requests are answered 503; running ones release normally. */
  stop(): void {
    clearInterval(this.syncTimer);
    clearInterval(this.renewTimer);
    for (const q of this.queues.values()) {
      for (let w = q.waiting.shift(); w !== undefined; w = q.waiting.shift()) {
        this.settle(w);
        w.reject(new SwitchyardError(ErrorCode.NoCapacity, 'The gateway is shutting down; retry on another replica.', { retryAfterSeconds: 1 }));
      }
    }
  }

  /** Requests waiting for capacity for `model` in the queue of `region` (the route's first hop). */
  waitingFor(model: string, region: string): number {
    return this.queues.get(`${model}\u0000${region}`)?.waiting.size ?? 0;
  }

  /** Requests waiting for capacity, all queues together. */
  get waiting(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.waiting.size;
    return n;
  }

  async acquire(req: AdmissionRequest): Promise<CapacityGrant> {
    const queue = this.queueFor(req.model, req.route[0]?.region.id ?? '');
    // Nobody waiting: try at once. Otherwise join the queue behind them (no overtaking).
    if (queue.waiting.size === 0) {
      const placed = await this.tryPlace(req, 0);
      if (placed === NO_NODE) throw noHealthyNode(req.model);
      if (placed !== FULL) return placed;
    }
    if (req.signal.aborted) throw clientClosed();
    if (queue.waiting.size >= this.settings.queueMax) {
      this.metrics.rejected('queue_full');
      throw this.noCapacity(queue, req, 'The admission queue for this model is full.');
    }
    const now = this.now();
    if (req.deadlineAt <= now) {
      this.metrics.rejected('deadline');
      throw this.noCapacity(queue, req, 'No capacity is free and the request may not wait.');
    }
    return new Promise<CapacityGrant>((resolve, reject) => {
      const waiter: Waiter = {
        req,
        queue,
        tenant: req.tenant,
        weight: req.weight,
        cost: req.costTokens,
        priority: req.priority,
        enqueuedAt: now,
        ticket: undefined,
        timer: undefined,
        resolve,
        reject,
        onAbort: () => {
          if (waiter.ticket === undefined || !queue.waiting.remove(waiter.ticket)) return;
          this.settle(waiter);
          this.metrics.rejected('client_closed');
          reject(clientClosed());
        },
      };
      waiter.ticket = queue.waiting.push(waiter);
      waiter.timer = setTimeout(() => {
        if (waiter.ticket === undefined || !queue.waiting.remove(waiter.ticket)) return;
        this.settle(waiter);
        this.metrics.rejected('deadline');
        reject(this.noCapacity(queue, req, `No capacity became free within the request's deadline (${Math.round(req.deadlineAt - waiter.enqueuedAt)} ms).`));
      }, req.deadlineAt - now);
      req.signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.pump(queue);
    });
  }

  /**
   * Ranks nodes on the local view and asks the ledger for the best few; on a refusal (another
   * gateway was faster) the view is fresher and ranking runs once more.
   */
  private async tryPlace(req: AdmissionRequest, waitedMs: number): Promise<PlaceResult> {
    let refreshed = false;
    let reserveCalls = 0;
    while (reserveCalls < 2) {
      const lastNode = req.affinityKey === undefined ? undefined : this.sessions.get(req.affinityKey);
      const ranking = this.policy.rank(
        { model: req.model, costTokens: req.costTokens, workTokens: req.workTokens, route: req.route, exclude: req.exclude, now: this.now(), affinityKey: req.affinityKey, lastNode },
        this.settings.candidates,
      );
      if (ranking.eligible === 0) return NO_NODE;
      if (ranking.nodes.length === 0) {
        // "Full" on the local view may be old news: other gateways' releases reach this view only
        // through snapshots, and an idle gateway takes one a second. Trusting it, a burst that
        // follows a busy spell on another gateway would fill the queue and be refused while the
        // nodes stand free. So a view older than one sync interval is refreshed (once, shared by
        // everyone arriving meanwhile) before the request waits or is refused.
        if (!refreshed && this.now() - this.lastSnapshotAt > this.settings.syncIntervalMs) {
          refreshed = true;
          await this.refreshView();
          continue;
        }
        return FULL;
      }
      const leaseId = `${this.leasePrefix}:${++this.leaseCounter}`;
      const horizon = this.policy.options.horizonSeconds;
      const candidates: LedgerNode[] = ranking.nodes.map((n) => ({ id: n.id, maxSequences: n.spec.maxSequences, tokenBudget: n.tokenBudget(horizon) }));
      reserveCalls++;
      const outcome = await this.ledger.reserve(leaseId, req.workTokens, candidates);
      if (outcome.granted >= 0) this.hold({ id: leaseId, nodeId: (ranking.nodes[outcome.granted] as NodeState).id, cost: req.workTokens });
      for (let i = 0; i < ranking.nodes.length; i++) {
        const n = ranking.nodes[i] as NodeState;
        n.setReserved(outcome.sequences[i] ?? 0, outcome.tokens[i] ?? 0);
        this.checkHeld(n.id, outcome.sequences[i] ?? 0);
      }
      if (outcome.granted < 0) continue;
      const node = ranking.nodes[outcome.granted] as NodeState;
      node.reserve(req.workTokens);
      if (req.affinityKey !== undefined) this.remember(req.affinityKey, node);
      this.metrics.admitted(req.priority, waitedMs / 1000);
      return this.grant(node, leaseId, req.workTokens, waitedMs);
    }
    return FULL;
  }

  private grant(node: NodeState, leaseId: string, cost: number, waitedMs: number): CapacityGrant {
    let released = false;
    return {
      node,
      waitedMs,
      release: () => {
        if (released) return;
        released = true;
        node.release(cost);
        this.unhold(leaseId);
        this.ledger.release(leaseId).then(
          (totals) => {
            if (totals !== undefined) this.fleet.nodes.get(totals.nodeId)?.setReserved(totals.sequences, totals.tokens);
            this.pumpAll();
          },
          (err: unknown) => this.log.warn({ err: (err as Error).message }, 'capacity release failed; the lease will expire'),
        );
      },
    };
  }

  /**
   * Places waiting requests, head first, while nodes have room. One pump per queue at a time;
   * a call that arrives meanwhile makes the running pump go round once more.
   */
  private pump(queue: ModelQueue): void {
    if (queue.pumping) {
      queue.again = true;
      return;
    }
    queue.pumping = true;
    void (async () => {
      try {
        do {
          queue.again = false;
          for (let head = queue.waiting.peek(); head !== undefined; head = queue.waiting.peek()) {
            const placed = await this.tryPlace(head.req, this.now() - head.enqueuedAt);
            if (placed === FULL) break;
            // The head may have left (deadline, disconnect) while the ledger answered.
            const stillWaiting = head.ticket !== undefined && queue.waiting.remove(head.ticket);
            if (!stillWaiting) {
              if (placed !== NO_NODE) placed.release();
              continue;
            }
            this.settle(head);
            if (placed === NO_NODE) head.reject(noHealthyNode(head.req.model));
            else head.resolve(placed);
          }
        } while (queue.again);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'admission queue pump failed; retrying on the next sync');
      } finally {
        queue.pumping = false;
      }
    })();
  }

  private pumpAll(): void {
    for (const q of this.queues.values()) if (q.waiting.size > 0) this.pump(q);
  }

  /**
   * Refreshes the ledger view (every second when idle, every tick while requests wait, since
   * other gateways' releases are only seen this way) and retries the queues.
   */
  private async sync(force: boolean): Promise<void> {
    const busy = this.waiting > 0;
    if (!force && !busy && this.now() - this.lastSnapshotAt < 1000) return;
    await this.refreshView();
    this.pumpAll();
  }

  /** Reads every node's totals from the ledger into the local view; concurrent callers share one read. */
  private refreshView(): Promise<void> {
    this.refreshing ??= this.readLedger().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async readLedger(): Promise<void> {
    const startedAt = this.now();
    try {
      const totals = await this.ledger.snapshot();
      this.lastSnapshotAt = startedAt;
      const seen = new Set<string>();
      for (const t of totals) {
        const node = this.fleet.nodes.get(t.nodeId);
        if (node === undefined) continue;
        node.setReserved(Math.max(0, t.sequences), Math.max(0, t.tokens));
        seen.add(t.nodeId);
        this.checkHeld(t.nodeId, t.sequences);
      }
      for (const node of this.fleet.nodes.values()) {
        if (seen.has(node.id)) continue;
        node.setReserved(0, 0);
        this.checkHeld(node.id, 0);
      }
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'ledger snapshot failed');
    }
  }

  private hold(lease: HeldLease): void {
    this.leases.set(lease.id, lease);
    this.heldOn.set(lease.nodeId, (this.heldOn.get(lease.nodeId) ?? 0) + 1);
  }

  private unhold(leaseId: string): void {
    const lease = this.leases.get(leaseId);
    if (lease === undefined) return;
    this.leases.delete(leaseId);
    const n = (this.heldOn.get(lease.nodeId) ?? 1) - 1;
    if (n > 0) this.heldOn.set(lease.nodeId, n);
    else this.heldOn.delete(lease.nodeId);
  }

  /**
   * The ledger says `sequences` are reserved on the node; fewer than this gateway's own open
   * leases there means it lost some: take them again now rather than at the next renewal. (A
   * reply that raced a reserve of ours can look short too; renewing then changes nothing.)
   */
  private checkHeld(nodeId: string, sequences: number): void {
    if (sequences < (this.heldOn.get(nodeId) ?? 0)) void this.renewLeases('rebuild');
  }

  private renewLeases(why: 'renew' | 'rebuild'): Promise<void> {
    this.renewing ??= this.renewHeld(why).finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private async renewHeld(why: 'renew' | 'rebuild'): Promise<void> {
    if (this.leases.size === 0) return;
    try {
      let restored = 0;
      const ids = [...this.leases.keys()];
      // In chunks, each read just before it is sent: a lease released meanwhile is never taken again.
      for (let i = 0; i < ids.length; i += 1000) {
        const chunk = ids.slice(i, i + 1000).flatMap((id) => this.leases.get(id) ?? []);
        if (chunk.length > 0) restored += await this.ledger.renew(chunk);
      }
      if (restored > 0) {
        this.log.warn({ restored, why }, 'the capacity ledger had lost leases of running requests (Redis restarted empty?): taken again');
        await this.refreshView();
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'capacity lease renewal failed');
    }
  }

  private settle(w: Waiter): void {
    clearTimeout(w.timer);
    w.req.signal.removeEventListener('abort', w.onAbort);
  }

  private remember(key: string, node: NodeState): void {
    this.sessions.delete(key);
    this.sessions.set(key, node);
    if (this.sessions.size > this.settings.sessionMemory) {
      const oldest = this.sessions.keys().next().value;
      if (oldest !== undefined) this.sessions.delete(oldest);
    }
  }

  private queueFor(model: string, region: string): ModelQueue {
    // Models are checked against the configured fleet before admission, so the map stays bounded.
    const key = `${model}\u0000${region}`;
    let q = this.queues.get(key);
    if (q === undefined) {
      q = { model, region, waiting: new FairQueue<Waiter>(), pumping: false, again: false };
      this.queues.set(key, q);
    }
    return q;
  }

  /** 503 no_capacity, with Retry-After from the tokens queued ahead over the model's capacity. */
  private noCapacity(queue: ModelQueue, req: AdmissionRequest, message: string): SwitchyardError {
    let tokensPerSecond = 0;
    const now = this.now();
    for (const hop of req.route) for (const n of hop.nodes) if (n.serves(req.model) && n.isAvailable(now)) tokensPerSecond += n.tokensPerSecond;
    // Queued fair-share tokens over capacity in output tokens/s: conservative, prompts count whole.
    const backlog = queue.waiting.queuedTokens + req.costTokens;
    const seconds = tokensPerSecond > 0 ? Math.ceil(backlog / tokensPerSecond) : 5;
    return new SwitchyardError(ErrorCode.NoCapacity, `${message} The fleet is at capacity for \`${req.model}\`; retry later.`, {
      retryAfterSeconds: Math.min(300, Math.max(1, seconds)),
    });
  }
}

function noHealthyNode(model: string): SwitchyardError {
  return new SwitchyardError(ErrorCode.NoHealthyNode, `No healthy node serves model '${model}' right now.`, { retryAfterSeconds: 1 });
}

function clientClosed(): SwitchyardError {
  return new SwitchyardError(ErrorCode.InvalidRequest, 'client closed the request', { status: 499 });
}
