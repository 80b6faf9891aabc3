/**
 * The admission queue's order: priority class first, then weighted fair share between tenants
 * measured in tokens, then arrival.
 *
 * Within a class this is start-time fair queueing (Goyal et al., 1996): each request gets a start
 * tag max(virtual time, its tenant's previous finish tag) and a finish tag start + cost / weight;
 * the request with the smallest start tag goes first and the virtual time moves to it. A tenant
 * that floods the queue only pushes its own tags ahead, so another tenant's next request starts
 * within one request of its share; an idle tenant cannot bank credit (its tags restart at the
 * virtual time).
 *
 * Pure data structure: no clock, no timers, no I/O. The gateway's admission gate and the
 * scheduling benchmark drive it the same way.
 */
export const PRIORITY_CLASSES = ['interactive', 'standard', 'batch'] as const;
export type PriorityClass = (typeof PRIORITY_CLASSES)[number];

export interface QueueEntry {
  readonly tenant: string;
  /** Tokens the request is expected to use (its admission cost). */
  readonly cost: number;
  /** The tenant's share weight (> 0); 1 when tenants are equal. */
  readonly weight: number;
  readonly priority: PriorityClass;
}

interface Slot<T> {
  readonly entry: T;
  readonly start: number;
  readonly seq: number;
  removed: boolean;
}

interface TenantLane<T> {
  readonly slots: Slot<T>[];
  head: number;
  /** Finish tag of the tenant's latest request. */
  lastFinish: number;
}

class ClassQueue<T extends QueueEntry> {
  virtualTime = 0;
  readonly lanes = new Map<string, TenantLane<T>>();

  push(entry: T, seq: number): Slot<T> {
    let lane = this.lanes.get(entry.tenant);
    if (lane === undefined) {
      lane = { slots: [], head: 0, lastFinish: 0 };
      this.lanes.set(entry.tenant, lane);
    }
    const start = Math.max(this.virtualTime, lane.lastFinish);
    lane.lastFinish = start + entry.cost / entry.weight;
    const slot: Slot<T> = { entry, start, seq, removed: false };
    lane.slots.push(slot);
    return slot;
  }

  /** The live slot with the smallest start tag (ties: earliest arrival), pruning removed ones. */
  head(): { lane: TenantLane<T>; slot: Slot<T> } | undefined {
    let best: { lane: TenantLane<T>; slot: Slot<T> } | undefined;
    for (const [tenant, lane] of this.lanes) {
      while (lane.head < lane.slots.length && (lane.slots[lane.head] as Slot<T>).removed) lane.head++;
      if (lane.head >= lane.slots.length) {
        // Empty lane: forget it once its finish tag no longer matters (it is not ahead of the
        // virtual time), so the map holds only tenants with work or recent service.
        if (lane.lastFinish <= this.virtualTime) this.lanes.delete(tenant);
        else if (lane.slots.length > 0) {
          lane.slots.length = 0;
          lane.head = 0;
        }
        continue;
      }
      const slot = lane.slots[lane.head] as Slot<T>;
      if (best === undefined || slot.start < best.slot.start || (slot.start === best.slot.start && slot.seq < best.slot.seq)) {
        best = { lane, slot };
      }
    }
    return best;
  }

  take(lane: TenantLane<T>, slot: Slot<T>): void {
    slot.removed = true;
    lane.head++;
    if (lane.head > 64 && lane.head * 2 > lane.slots.length) {
      lane.slots.splice(0, lane.head);
      lane.head = 0;
    }
    this.virtualTime = Math.max(this.virtualTime, slot.start);
  }
}

/** A handle to a queued request: pass it to `remove` when the request leaves early. */
export interface Ticket<T> {
  readonly entry: T;
}

export class FairQueue<T extends QueueEntry> {
  private readonly classes = PRIORITY_CLASSES.map(() => new ClassQueue<T>());
  private seq = 0;
  private count = 0;
  private tokens = 0;

  /** Requests waiting. */
  get size(): number {
    return this.count;
  }

  /** Tokens (sum of costs) waiting: the basis of the Retry-After estimate. */
  get queuedTokens(): number {
    return this.tokens;
  }

  push(entry: T): Ticket<T> {
    const slot = this.classOf(entry).push(entry, this.seq++);
    this.count++;
    this.tokens += entry.cost;
    return slot;
  }

  /** The request that goes next, without taking it. */
  peek(): T | undefined {
    for (const q of this.classes) {
      const h = q.head();
      if (h !== undefined) return h.slot.entry;
    }
    return undefined;
  }

  /** Takes the request that goes next and advances its class's virtual time. */
  shift(): T | undefined {
    for (const q of this.classes) {
      const h = q.head();
      if (h === undefined) continue;
      q.take(h.lane, h.slot);
      this.count--;
      this.tokens -= h.slot.entry.cost;
      return h.slot.entry;
    }
    return undefined;
  }

  /** Removes a request that left (deadline, client disconnect); false when it was already gone. */
  remove(ticket: Ticket<T>): boolean {
    const slot = ticket as Slot<T>;
    if (slot.removed) return false;
    slot.removed = true;
    this.count--;
    this.tokens -= slot.entry.cost;
    return true;
  }

  private classOf(entry: T): ClassQueue<T> {
    const i = PRIORITY_CLASSES.indexOf(entry.priority);
    return this.classes[i < 0 ? 1 : i] as ClassQueue<T>;
  }
}
