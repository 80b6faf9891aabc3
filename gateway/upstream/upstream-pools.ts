import { Pool } from 'undici';
import type { Fleet } from '../../scheduler/fleet.js';
import type { NodeState } from '../../scheduler/node-state.js';

export interface UpstreamPoolSettings {
  readonly connectTimeoutMs: number;
  readonly firstByteTimeoutMs: number;
  readonly idleTimeoutMs: number;
}

/**
 * One undici Pool per node: keep-alive connections, bounded. The bound is four connections per
 * declared sequence slot (at least 32), so the engine's own waiting queue (which its metrics
 * report) fills before requests wait invisibly inside the gateway.
 */
export class UpstreamPools {
  private readonly pools = new Map<NodeState, Pool>();

  constructor(
    fleet: Fleet,
    private readonly settings: UpstreamPoolSettings,
  ) {
    for (const node of fleet.nodes.values()) this.add(node);
    // Registered nodes come and go: a removed node's pool lets its open requests finish, then closes.
    fleet.onChange((added, removed) => {
      for (const node of added) this.add(node);
      for (const node of removed) {
        const pool = this.pools.get(node);
        this.pools.delete(node);
        void pool?.close().catch(() => undefined);
      }
    });
  }

  private add(node: NodeState): void {
    this.pools.set(
      node,
      new Pool(node.spec.origin, {
        connections: Math.max(32, node.spec.maxSequences * 4),
        pipelining: 1,
        keepAliveTimeout: 30_000,
        connect: { timeout: this.settings.connectTimeoutMs },
        headersTimeout: this.settings.firstByteTimeoutMs,
        bodyTimeout: this.settings.idleTimeoutMs,
      }),
    );
  }

  get(node: NodeState): Pool {
    const pool = this.pools.get(node);
    if (pool === undefined) throw new Error(`no upstream pool for node ${node.id}`);
    return pool;
  }

  /** Lets open requests finish, then closes; after `graceMs` cuts what is still open. */
  async close(graceMs: number): Promise<void> {
    const all = [...this.pools.values()];
    const timer = setTimeout(() => {
      for (const p of all) void p.destroy().catch(() => undefined);
    }, graceMs);
    try {
      await Promise.allSettled(all.map((p) => p.close()));
    } finally {
      clearTimeout(timer);
    }
  }

  async destroy(): Promise<void> {
    await Promise.allSettled([...this.pools.values()].map((p) => p.destroy()));
  }
}
