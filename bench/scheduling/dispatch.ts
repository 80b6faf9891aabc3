import { FairQueue, type QueueEntry, type Ticket } from '../../scheduler/admission/fair-queue.js';
import { workTokens } from '../../scheduler/capacity/cost-estimator.js';
import type { ExpectedCompletionPolicy } from '../../scheduler/placement/expected-completion.js';
import type { PlacementPolicy, PlacementRequest } from '../../scheduler/placement/policy.js';
import type { Dispatcher, Fleet, SimRequest } from './fleet-sim.js';

/** The request a gateway would hand to placement; the conversation is the affinity key when asked for. */
function placementRequest(fleet: Fleet, req: SimRequest, now: number, affinity: boolean): PlacementRequest {
  const key = affinity ? req.conversation : undefined;
  return {
    model: 'm', costTokens: req.promptTokens + req.outputTokens, workTokens: workTokens(req.promptTokens, req.outputTokens), route: fleet.route, exclude: undefined, now,
    affinityKey: key, lastNode: key === undefined ? undefined : fleet.lastNode(key),
  };
}

/** Places every request on arrival; whatever does not fit waits inside the chosen engine. */
export class ImmediateDispatch implements Dispatcher {
  readonly name: string;
  constructor(private readonly policy: PlacementPolicy, name?: string) {
    this.name = name ?? policy.name;
  }

  arrive(fleet: Fleet, req: SimRequest, now: number): void {
    const node = this.policy.choose(placementRequest(fleet, req, now, false));
    if (node === undefined) throw new Error('no eligible node');
    // The baselines keep their books in whole tokens (least-work's score reads them).
    fleet.place(req, node, req.promptTokens + req.outputTokens);
  }

  pump(): void {}
}

interface Queued extends QueueEntry {
  readonly req: SimRequest;
}

export interface AdmissionOptions {
  readonly name: string;
  /** Pass the conversation as affinity key and the node of its previous turn. */
  readonly affinity: boolean;
  /** A request still queued after this long is rejected (the gateway's interactive default). */
  readonly deadlineMs: number;
}

/**
 * Switchyard's path: a request goes to the best node with headroom in the ledger view; when none
 * has headroom (or others are already waiting) it waits in the real fair queue, which is drained
 * in order as completions free headroom. One tenant and one class here, so the order is arrival.
 */
export class AdmissionQueueDispatch implements Dispatcher {
  readonly name: string;
  private readonly queue = new FairQueue<Queued>();
  /** Tickets in arrival order, to find expired requests without scanning the queue. */
  private readonly tickets: Ticket<Queued>[] = [];
  private head = 0;

  constructor(private readonly policy: ExpectedCompletionPolicy, private readonly options: AdmissionOptions) {
    this.name = options.name;
  }

  arrive(fleet: Fleet, req: SimRequest, now: number): void {
    if (this.queue.size === 0) {
      const node = this.policy.rank(placementRequest(fleet, req, now, this.options.affinity), 1).nodes[0];
      if (node !== undefined) {
        fleet.place(req, node, workTokens(req.promptTokens, req.outputTokens));
        return;
      }
    }
    const cost = req.promptTokens + req.outputTokens;
    this.tickets.push(this.queue.push({ tenant: 't', cost, weight: 1, priority: 'interactive', req }));
  }

  pump(fleet: Fleet, now: number): void {
    this.expire(fleet, now);
    for (let entry = this.queue.peek(); entry !== undefined; entry = this.queue.peek()) {
      const node = this.policy.rank(placementRequest(fleet, entry.req, now, this.options.affinity), 1).nodes[0];
      if (node === undefined) return;
      this.queue.shift();
      fleet.place(entry.req, node, workTokens(entry.req.promptTokens, entry.req.outputTokens));
    }
  }

  /** Rejects requests past the deadline; tickets already placed are just dropped from the list. */
  private expire(fleet: Fleet, now: number): void {
    while (this.head < this.tickets.length) {
      const ticket = this.tickets[this.head] as Ticket<Queued>;
      if (now - ticket.entry.req.arrivalMs <= this.options.deadlineMs && this.queue.size > 0) break;
      this.head++;
      if (this.queue.remove(ticket)) fleet.reject(ticket.entry.req, now);
    }
    if (this.head > 1024 && this.head * 2 > this.tickets.length) {
      this.tickets.splice(0, this.head);
      this.head = 0;
    }
  }
}
