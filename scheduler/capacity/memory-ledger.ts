import { DEFAULT_LEDGER_LEASE_TTL_MS, fits, type CapacityLedger, type HeldLease, type LedgerNode, type NodeTotals, type ReserveOutcome } from './ledger.js';

interface Totals {
  sequences: number;
  tokens: number;
}

interface Lease {
  readonly nodeId: string;
  readonly cost: number;
  expiresAt: number;
}

/** The ledger in one process. Leases expire as in Redis, so both pass the same contract tests. */
export class MemoryLedger implements CapacityLedger {
  private readonly totals = new Map<string, Totals>();
  private readonly leases = new Map<string, Lease>();
  private nextPurgeAt = 0;

  constructor(
    readonly leaseTtlMs = DEFAULT_LEDGER_LEASE_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  reserve(leaseId: string, cost: number, candidates: readonly LedgerNode[]): Promise<ReserveOutcome> {
    this.purge();
    let granted = -1;
    const sequences: number[] = [];
    const tokens: number[] = [];
    for (let i = 0; i < candidates.length; i++) {
      const node = candidates[i] as LedgerNode;
      const t = this.totalsOf(node.id);
      if (granted < 0 && fits(t.sequences, t.tokens, cost, node)) {
        granted = i;
        t.sequences += 1;
        t.tokens += cost;
        this.leases.set(leaseId, { nodeId: node.id, cost, expiresAt: this.now() + this.leaseTtlMs });
      }
      sequences.push(t.sequences);
      tokens.push(t.tokens);
    }
    return Promise.resolve({ granted, sequences, tokens });
  }

  release(leaseId: string): Promise<NodeTotals | undefined> {
    return Promise.resolve(this.drop(leaseId));
  }

  renew(leases: readonly HeldLease[]): Promise<number> {
    this.purge(true);
    const until = this.now() + this.leaseTtlMs;
    let restored = 0;
    for (const held of leases) {
      const lease = this.leases.get(held.id);
      if (lease !== undefined) {
        lease.expiresAt = until;
        continue;
      }
      const t = this.totalsOf(held.nodeId);
      t.sequences += 1;
      t.tokens += held.cost;
      this.leases.set(held.id, { nodeId: held.nodeId, cost: held.cost, expiresAt: until });
      restored++;
    }
    return Promise.resolve(restored);
  }

  snapshot(): Promise<NodeTotals[]> {
    this.purge(true);
    return Promise.resolve([...this.totals].map(([nodeId, t]) => ({ nodeId, sequences: t.sequences, tokens: t.tokens })));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private totalsOf(nodeId: string): Totals {
    let t = this.totals.get(nodeId);
    if (t === undefined) {
      t = { sequences: 0, tokens: 0 };
      this.totals.set(nodeId, t);
    }
    return t;
  }

  private drop(leaseId: string): NodeTotals | undefined {
    const lease = this.leases.get(leaseId);
    if (lease === undefined) return undefined;
    this.leases.delete(leaseId);
    const t = this.totalsOf(lease.nodeId);
    t.sequences -= 1;
    t.tokens -= lease.cost;
    return { nodeId: lease.nodeId, sequences: t.sequences, tokens: t.tokens };
  }

  /** Expired leases go in a scan at most every second (a quarter TTL when shorter), or at once when `force`. */
  private purge(force = false): void {
    const now = this.now();
    if (!force && now < this.nextPurgeAt) return;
    this.nextPurgeAt = now + Math.min(1000, this.leaseTtlMs / 4);
    for (const [id, lease] of this.leases) if (lease.expiresAt <= now) this.drop(id);
  }
}
