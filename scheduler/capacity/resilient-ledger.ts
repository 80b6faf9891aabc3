import type { Logger } from '../../core/logger.js';
import type { CapacityLedger, HeldLease, LedgerNode, NodeTotals, ReserveOutcome } from './ledger.js';
import { MemoryLedger } from './memory-ledger.js';

/**
 * The shared ledger, degrading to this gateway's own accounting while the shared one (Redis) is
 * unreachable: requests keep flowing within the limits one gateway can see, instead of failing.
 * Leases taken locally are released locally; the shared ledger's leases of this gateway expire
 * there by themselves if it cannot release them. The outage is logged once and counted.
 */
export class ResilientLedger implements CapacityLedger {
  private readonly local: MemoryLedger;
  private readonly localLeases = new Set<string>();
  private down = false;

  constructor(
    private readonly shared: CapacityLedger,
    private readonly log: Logger,
    private readonly onError: () => void = () => undefined,
  ) {
    this.local = new MemoryLedger(shared.leaseTtlMs);
  }

  get leaseTtlMs(): number {
    return this.shared.leaseTtlMs;
  }

  async reserve(leaseId: string, cost: number, candidates: readonly LedgerNode[]): Promise<ReserveOutcome> {
    try {
      const out = await this.shared.reserve(leaseId, cost, candidates);
      this.up();
      return out;
    } catch (err) {
      this.failed(err);
      const out = await this.local.reserve(leaseId, cost, candidates);
      if (out.granted >= 0) this.localLeases.add(leaseId);
      return out;
    }
  }

  async release(leaseId: string): Promise<NodeTotals | undefined> {
    if (this.localLeases.delete(leaseId)) return this.local.release(leaseId);
    try {
      return await this.shared.release(leaseId);
    } catch (err) {
      this.failed(err);
      return undefined; // expires in the shared ledger within one lease TTL
    }
  }

  /** Local leases are renewed locally; the rest in the shared ledger, taken again there if it lost them. */
  async renew(leases: readonly HeldLease[]): Promise<number> {
    await this.local.renew(leases.filter((l) => this.localLeases.has(l.id)));
    try {
      const restored = await this.shared.renew(leases.filter((l) => !this.localLeases.has(l.id)));
      this.up();
      return restored;
    } catch (err) {
      this.failed(err);
      return 0;
    }
  }

  async snapshot(): Promise<NodeTotals[]> {
    try {
      const out = await this.shared.snapshot();
      this.up();
      if (this.localLeases.size === 0) return out;
      // Local leases from an outage still run: count them on top until they end.
      const local = new Map((await this.local.snapshot()).map((t) => [t.nodeId, t]));
      return out.map((t) => {
        const l = local.get(t.nodeId);
        return l === undefined ? t : { nodeId: t.nodeId, sequences: t.sequences + l.sequences, tokens: t.tokens + l.tokens };
      });
    } catch (err) {
      this.failed(err);
      return this.local.snapshot();
    }
  }

  close(): Promise<void> {
    return this.shared.close();
  }

  private failed(err: unknown): void {
    this.onError();
    if (this.down) return;
    this.down = true;
    this.log.warn({ err: (err as Error).message }, 'capacity ledger unreachable: placing with this gateway\'s own accounting until it is back');
  }

  private up(): void {
    if (!this.down) return;
    this.down = false;
    this.log.info('capacity ledger reachable again');
  }
}
