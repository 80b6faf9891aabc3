import { Counter } from 'prom-client';
import type { Registry } from '../../core/metrics.js';

/** Why a node's open streams were ended for it. */
export type NodeDownReason = 'health_probe' | 'engine_down';

/**
 * The streams open to each node, so that a node declared down (its health probes fail, or its
 * agent says the engine stopped answering) ends them at once with an error event. Without this a
 * client whose engine died with the socket left open waits out the whole idle timeout in silence.
 */
export class OpenStreams {
  private readonly byNode = new Map<string, Set<(reason: NodeDownReason) => void>>();
  private readonly ended: Counter<'reason'>;

  constructor(registry: Registry) {
    this.ended = new Counter({
      name: 'switchyard_streams_ended_node_down_total',
      help: 'Streams ended with an error event because their node was declared down, by how it was found (health_probe, engine_down).',
      labelNames: ['reason'],
      registers: [registry],
    });
  }

  /** Registers a stream to `nodeId`; `end` is called if the node goes down. Returns the unregister. */
  track(nodeId: string, end: (reason: NodeDownReason) => void): () => void {
    let streams = this.byNode.get(nodeId);
    if (streams === undefined) {
      streams = new Set();
      this.byNode.set(nodeId, streams);
    }
    const set = streams;
    set.add(end);
    return () => {
      set.delete(end);
      if (set.size === 0 && this.byNode.get(nodeId) === set) this.byNode.delete(nodeId);
    };
  }

  /** Ends every stream open to `nodeId`; returns how many. */
  endAll(nodeId: string, reason: NodeDownReason): number {
    const streams = this.byNode.get(nodeId);
    if (streams === undefined) return 0;
    this.byNode.delete(nodeId);
    for (const end of streams) end(reason);
    this.ended.inc({ reason }, streams.size);
    return streams.size;
  }
}
