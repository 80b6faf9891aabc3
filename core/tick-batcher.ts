/** A stream whose writes can be held and sent as one (net.Socket: cork/uncork). */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

/*
 * Every batcher with something queued flushes in one setImmediate per turn, here, so that the
 * sends of one turn (a turn's admissions and its capacity reservations, on one Redis connection)
 * can leave in one socket write: the connections the batchers name are corked while they send.
 */
const due = new Set<TickBatcher<unknown, unknown>>();
let turnScheduled = false;

function flushTurn(): void {
  turnScheduled = false;
  const batchers = [...due];
  due.clear();
  const corked = new Set<Corkable>();
  for (const b of batchers) {
    const c = b.corkable();
    if (c !== undefined && !corked.has(c)) {
      c.cork();
      corked.add(c);
    }
  }
  try {
    for (const b of batchers) b.flush();
  } finally {
    for (const c of corked) c.uncork();
  }
}

/**
 * Calls made during one event-loop turn, sent together: `add` queues an item under a group (for
 * Redis, keys one script may touch atomically: one API key's buckets, the capacity ledger) and
 * resolves with that item's own result. When the turn's I/O callbacks have run (`setImmediate`),
 * each group goes out as one call of `send`, so N requests that arrive or finish together cost one
 * Redis command instead of N, and a lone request waits for nothing but the end of its turn.
 *
 * `send` must answer one result per item, in order; if it fails, every item of that call fails
 * with its error. A group that reaches `maxItems` is sent at once (bounded script argument lists).
 * `corkable` names the connection `send` writes to, if it can be corked (see flushTurn).
 */
export class TickBatcher<I, R> {
  private pending = new Map<string, Batch<I, R>>();

  constructor(
    private readonly send: (group: string, items: readonly I[]) => Promise<readonly R[]>,
    private readonly maxItems = 256,
    readonly corkable: () => Corkable | undefined = () => undefined,
  ) {}

  add(group: string, item: I): Promise<R> {
    let batch = this.pending.get(group);
    if (batch === undefined) {
      batch = { items: [], resolve: [], reject: [] };
      this.pending.set(group, batch);
    }
    const b = batch;
    const result = new Promise<R>((resolve, reject) => {
      b.items.push(item);
      b.resolve.push(resolve);
      b.reject.push(reject);
    });
    if (b.items.length >= this.maxItems) {
      this.pending.delete(group);
      this.dispatch(group, b);
    } else {
      due.add(this as TickBatcher<unknown, unknown>);
      if (!turnScheduled) {
        turnScheduled = true;
        setImmediate(flushTurn);
      }
    }
    return result;
  }

  /** Sends everything queued now (what the end of the turn does). */
  flush(): void {
    const groups = this.pending;
    if (groups.size === 0) return;
    this.pending = new Map();
    for (const [group, batch] of groups) this.dispatch(group, batch);
  }

  private dispatch(group: string, batch: Batch<I, R>): void {
    let sent: Promise<readonly R[]>;
    try {
      sent = this.send(group, batch.items);
    } catch (err) {
      sent = Promise.reject(err);
    }
    sent.then(
      (results) => {
        if (results.length !== batch.items.length) {
          const err = new Error(`batch of ${batch.items.length} answered with ${results.length} results`);
          for (const reject of batch.reject) reject(err);
          return;
        }
        for (let i = 0; i < results.length; i++) (batch.resolve[i] as (r: R) => void)(results[i] as R);
      },
      (err: unknown) => {
        for (const reject of batch.reject) reject(err);
      },
    );
  }
}

interface Batch<I, R> {
  readonly items: I[];
  readonly resolve: ((r: R) => void)[];
  readonly reject: ((err: unknown) => void)[];
}
