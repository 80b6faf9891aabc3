import type { NodeSpec } from '../core/config/topology.js';

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

  constructor(readonly spec: NodeSpec) {}

  get id(): string {
    return this.spec.id;
  }

  isAvailable(now: number): boolean {
    return this.healthy && this.ejectedUntil <= now;
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
