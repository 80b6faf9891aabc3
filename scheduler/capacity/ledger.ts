/**
 * The capacity ledger: per node, the sequences and tokens reserved by every gateway replica,
 * checked against the node's sequence limit and token budget, and changed atomically in one round
 * trip. Reservations are leases: a gateway renews its own while their requests run, and a gateway
 * that dies stops renewing, so what it held returns to the fleet within one lease TTL.
 *
 * Implementations: `MemoryLedger` (one process: `switchyard start`, tests) and `RedisLedger`
 * (shared by all gateways), wrapped by `ResilientLedger` so a Redis outage degrades to
 * per-gateway accounting instead of failing requests.
 */
export interface LedgerNode {
  readonly id: string;
  readonly maxSequences: number;
  /** Most tokens (prompt + expected output) that may be reserved at once on the node. */
  readonly tokenBudget: number;
}

export interface ReserveOutcome {
  /** Index into the candidates of the node the lease was taken on; -1 when none had room. */
  readonly granted: number;
  /** Per candidate, in order: reserved sequences and tokens after the call (fleet-wide). */
  readonly sequences: readonly number[];
  readonly tokens: readonly number[];
}

/** A lease as its gateway knows it: enough to take it again where the ledger lost it. */
export interface HeldLease {
  readonly id: string;
  readonly nodeId: string;
  readonly cost: number;
}

export interface NodeTotals {
  readonly nodeId: string;
  readonly sequences: number;
  readonly tokens: number;
}

export interface CapacityLedger {
  /**
   * Takes a lease of `cost` tokens and one sequence on the first candidate with room: a free
   * sequence slot and `tokens + cost <= tokenBudget` (an idle node takes any single request).
   */
  reserve(leaseId: string, cost: number, candidates: readonly LedgerNode[]): Promise<ReserveOutcome>;
  /** Gives a lease back. Idempotent: a lease already released or expired changes nothing (undefined). */
  release(leaseId: string): Promise<NodeTotals | undefined>;
  /**
   * Extends the given leases by one TTL from now. A lease the ledger no longer has (a Redis that
   * restarted empty, or one that expired while its gateway could not reach the ledger) is taken
   * again on its node, without a capacity check: its request is running there. Resolves to the
   * number taken again. Callers pass only leases they still hold (never one being released).
   */
  renew(leases: readonly HeldLease[]): Promise<number>;
  /** Every node's totals, expired leases removed first. */
  snapshot(): Promise<NodeTotals[]>;
  readonly leaseTtlMs: number;
  close(): Promise<void>;
}

export const DEFAULT_LEDGER_LEASE_TTL_MS = 30_000;

/** The rule both implementations apply (the Redis script repeats it in Lua). */
export function fits(sequences: number, tokens: number, cost: number, node: LedgerNode): boolean {
  return sequences < node.maxSequences && (sequences === 0 || tokens + cost <= node.tokenBudget);
}
