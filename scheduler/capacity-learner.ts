/**
 * Learns a node's real generation capacity from its agent's token counter. The declared
 * tokens/s is the prior; an observation counts only while the node is busy (most sequence slots
 * running), because an idle node's token rate says nothing about what it could do. Observations
 * move the estimate by an exponentially weighted average, so one odd interval does not swing it.
 */
export interface LearnerOptions {
  /** Weight of a new observation, 0..1. */
  readonly alpha?: number;
  /** Fraction of maxSequences running that makes an interval count as "busy". */
  readonly busyFraction?: number;
}

interface NodeLearning {
  lastTokens: number | undefined;
  lastAtMs: number | undefined;
  estimate: number;
  observations: number;
}

export interface LearnedCapacity {
  readonly tokensPerSecond: number;
  readonly observations: number;
}

export class CapacityLearner {
  private readonly nodes = new Map<string, NodeLearning>();
  private readonly alpha: number;
  private readonly busyFraction: number;

  constructor(opts: LearnerOptions = {}) {
    this.alpha = opts.alpha ?? 0.2;
    this.busyFraction = opts.busyFraction ?? 0.75;
  }

  /**
   * One report: the counter reading and how many sequences were running. Returns the current
   * estimate (the declared value until the node has been seen busy).
   */
  observe(
    nodeId: string,
    declared: { tokensPerSecond: number; maxSequences: number },
    reading: { generationTokensTotal: number | undefined; running: number; atMs: number },
  ): LearnedCapacity {
    let n = this.nodes.get(nodeId);
    if (n === undefined) {
      n = { lastTokens: undefined, lastAtMs: undefined, estimate: declared.tokensPerSecond, observations: 0 };
      this.nodes.set(nodeId, n);
    }
    const tokens = reading.generationTokensTotal;
    if (tokens !== undefined && n.lastTokens !== undefined && n.lastAtMs !== undefined && reading.atMs > n.lastAtMs) {
      // A counter that went down means the engine restarted: this interval says nothing.
      const delta = tokens - n.lastTokens;
      const busy = reading.running >= this.busyFraction * declared.maxSequences;
      if (delta >= 0 && busy) {
        const rate = (delta * 1000) / (reading.atMs - n.lastAtMs);
        n.estimate = n.estimate + this.alpha * (rate - n.estimate);
        n.observations += 1;
      }
    }
    n.lastTokens = tokens;
    n.lastAtMs = reading.atMs;
    return { tokensPerSecond: n.estimate, observations: n.observations };
  }

  learned(nodeId: string): LearnedCapacity | undefined {
    const n = this.nodes.get(nodeId);
    return n === undefined ? undefined : { tokensPerSecond: n.estimate, observations: n.observations };
  }

  forget(nodeId: string): void {
    this.nodes.delete(nodeId);
  }
}
