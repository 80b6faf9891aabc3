import { request } from 'undici';
import type { Logger } from '../../core/logger.js';
import type { EngineKind } from '../../core/config/regions-schema.js';
import type { Fleet } from '../../scheduler/fleet.js';
import type { NodeState } from '../../scheduler/node-state.js';
import type { UpstreamPools } from './upstream-pools.js';

export interface NodeHealthSettings {
  readonly breakerFailures: number;
  readonly breakerCooldownMs: number;
  readonly healthIntervalMs: number;
  /** Failed probes in a row before a node that was passing is marked unhealthy. */
  readonly healthFailures: number;
  readonly connectTimeoutMs: number;
}

/** The path each engine answers cheaply when it is ready to serve. */
const HEALTH_PATH: Record<EngineKind, string> = {
  vllm: '/health',
  sglang: '/health',
  llamacpp: '/health',
  tgi: '/health',
  ollama: '/api/version',
  openai: '/v1/models',
  sim: '/health',
};

/**
 * Circuit breaker plus active health checks. A node that fails `breakerFailures` times in a row is
 * ejected for `breakerCooldownMs`; when the cool-down ends it is probed, and only a passing probe
 * lets traffic back (a failing one ejects it for another cool-down). Independently, every node is
 * probed every `healthIntervalMs`, so a node that is down gets no traffic even before it fails a
 * request, and one that comes back is used again without a restart. One late or failed probe is
 * not an outage (a busy engine may answer its health path late): a node that was passing is
 * marked unhealthy after `healthFailures` failed probes in a row; a node's first probe (at
 * start, or when it was registered) decides at once; one passing probe restores a node.
 */
export class NodeHealth {
  private timer: NodeJS.Timeout | undefined;
  private readonly probeTimers = new Set<NodeJS.Timeout>();
  private stopped = false;
  /** Failed probes in a row per node; a node not in it was never probed. Weak: nodes come and go. */
  private readonly failedProbes = new WeakMap<NodeState, number>();

  constructor(
    private readonly fleet: Fleet,
    private readonly pools: UpstreamPools,
    private readonly settings: NodeHealthSettings,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    /** Called when probes turn a passing node unhealthy (its open streams are ended). */
    private readonly onDown: (node: NodeState) => void = () => undefined,
  ) {}

  /** Probes every node once (so the first requests already avoid dead nodes), then periodically. */
  async start(): Promise<void> {
    await this.probeAll();
    if (this.stopped) return;
    this.timer = setInterval(() => void this.probeAll(), this.settings.healthIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const t of this.probeTimers) clearTimeout(t);
    this.probeTimers.clear();
  }

  recordSuccess(node: NodeState): void {
    node.consecutiveFailures = 0;
  }

  /** Counts a failure; returns true when it ejected the node. */
  recordFailure(node: NodeState, reason: string): boolean {
    node.consecutiveFailures += 1;
    if (node.consecutiveFailures < this.settings.breakerFailures || node.ejectedUntil > this.now()) return false;
    this.eject(node, reason);
    return true;
  }

  private eject(node: NodeState, reason: string): void {
    node.ejectedUntil = this.now() + this.settings.breakerCooldownMs;
    this.log.warn({ nodeId: node.id, reason, cooldownMs: this.settings.breakerCooldownMs }, 'node ejected');
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.probeTimers.delete(t);
      void this.probeAfterCooldown(node);
    }, this.settings.breakerCooldownMs);
    t.unref();
    this.probeTimers.add(t);
  }

  private async probeAfterCooldown(node: NodeState): Promise<void> {
    if (await this.probe(node)) {
      node.consecutiveFailures = 0;
      node.ejectedUntil = 0;
      node.healthy = true;
      this.log.info({ nodeId: node.id }, 'node restored after cool-down');
    } else if (!this.stopped) {
      this.eject(node, 'probe_failed');
    }
  }

  /** One round of active probes over every node (the timer runs one per `healthIntervalMs`). */
  async probeAll(): Promise<void> {
    await Promise.all(
      [...this.fleet.nodes.values()].map(async (node) => {
        const ok = await this.probe(node);
        const before = this.failedProbes.get(node);
        const failed = ok ? 0 : (before ?? 0) + 1;
        this.failedProbes.set(node, failed);
        // A node's first probe (at start, or when it was registered) decides at once.
        const healthy = ok || (node.healthy && before !== undefined && failed < this.settings.healthFailures);
        if (healthy !== node.healthy) {
          node.healthy = healthy;
          this.log.info({ nodeId: node.id, healthy, failedProbes: failed }, 'node health changed');
          if (!healthy) this.onDown(node);
        }
      }),
    );
  }

  /** One GET on the engine's health path over the node's own pool; any 2xx passes. */
  async probe(node: NodeState): Promise<boolean> {
    try {
      const res = await request(node.spec.baseUrl + HEALTH_PATH[node.spec.engine], {
        dispatcher: this.pools.get(node),
        method: 'GET',
        headers: node.spec.headers,
        headersTimeout: Math.max(1000, this.settings.connectTimeoutMs),
        bodyTimeout: Math.max(1000, this.settings.connectTimeoutMs),
      });
      await res.body.dump();
      return res.statusCode >= 200 && res.statusCode < 300;
    } catch {
      return false;
    }
  }
}
