import type { Logger } from '../core/logger.js';
import { nodeEndpoint, type NodeSpec } from '../core/config/topology.js';
import type { EngineKind } from '../core/config/regions-schema.js';
import type { LiveState } from '../core/storage/live-state.js';
import type { NodeRecord, NodeStore } from '../core/storage/node-store.js';
import type { Fleet } from '../scheduler/fleet.js';

/**
 * Keeps this gateway's fleet in step with the node registry (polled every `pollMs`: a small
 * query per gateway, never per request) and with the agents' load reports (pushed by the
 * scheduler through LiveState). Registrations, drains and removals reach the gateway within
 * about a second, without a restart.
 */
export class FleetSync {
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly fleet: Fleet,
    private readonly nodes: NodeStore,
    private readonly live: LiveState,
    private readonly log: Logger,
    private readonly pollMs = 1000,
    /** Called when a node's agent reports that its engine stopped answering. */
    private readonly onEngineDown: (nodeId: string) => void = () => undefined,
  ) {}

  async start(): Promise<void> {
    await this.live.subscribe((load) => {
      const node = this.fleet.nodes.get(load.nodeId);
      if (node === undefined) return;
      const wasDown = node.report?.engineDown === true;
      node.report = { running: load.running, waiting: load.waiting, kvCacheUsage: load.kvCacheUsage, atMs: load.atMs, engineDown: load.engineDown === true, gpu: load.gpu };
      if (load.engineDown === true && !wasDown) this.onEngineDown(node.id);
      if (load.learnedTokensPerSecond !== undefined && load.learnedTokensPerSecond > 0) node.learnedTokensPerSecond = load.learnedTokensPerSecond;
    });
    await this.sync();
    this.timer = setInterval(() => void this.sync(), this.pollMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async sync(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const records = await this.nodes.list();
      this.fleet.setRegistered(records.map((r) => ({ spec: toNodeSpec(r), draining: r.draining })));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'node registry poll failed; keeping the last known fleet');
    } finally {
      this.polling = false;
    }
  }
}

export function toNodeSpec(r: NodeRecord): NodeSpec {
  return {
    id: r.id,
    regionId: r.region,
    clusterId: r.cluster,
    ...nodeEndpoint(r.url),
    engine: r.engine as EngineKind,
    models: r.models,
    tokensPerSecond: r.tokensPerSecond,
    maxSequences: r.maxSequences,
    headers: {},
    sim: undefined,
  };
}
