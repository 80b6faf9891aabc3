import type { Logger } from '../core/logger.js';
import type { LiveState } from '../core/storage/live-state.js';
import type { NodeStore } from '../core/storage/node-store.js';
import { AgentService } from './agents/agent-service.js';

export interface SchedulerOptions {
  readonly nodes: NodeStore;
  readonly live: LiveState;
  readonly log: Logger;
  readonly host: string;
  readonly port: number;
  readonly reportIntervalMs: number;
}

export interface SchedulerHandle {
  readonly port: number;
  readonly agents: AgentService;
  stop(): Promise<void>;
}

/**
 * The scheduler: agents connect with their node's join token (checked against the registry) and
 * stream load; each report goes out to every gateway through LiveState. An operator's drain or
 * resume reaches the node's agent within about a second (the registry is polled for changes).
 */
export async function startScheduler(opts: SchedulerOptions): Promise<SchedulerHandle> {
  const { nodes, live, log } = opts;
  const agents = new AgentService({
    auth: { verify: (id, token) => nodes.verifyJoinToken(id, token) },
    log,
    reportIntervalMs: opts.reportIntervalMs,
    initialCommands: async (id) => ((await nodes.get(id))?.draining === true ? [{ drain: {} }] : []),
    onReport: (view) => {
      const r = view.lastReport;
      if (r === undefined) return;
      live.publish({
        nodeId: view.nodeId,
        running: r.engine.running_requests,
        waiting: r.engine.waiting_requests,
        kvCacheUsage: r.engine.kv_cache_usage,
        atMs: Date.now(),
      });
    },
  });
  // The drain state each node's agent was last told: commands go out on change only.
  const told = new Map<string, boolean>();
  let since = new Date(Date.now() - 1000);
  const poll = setInterval(() => {
    const at = new Date(Date.now() - 1000); // overlap: a change committed during the query is not missed
    nodes.changedSince(since).then(
      (changed) => {
        since = at;
        for (const node of changed) {
          const before = told.get(node.id) ?? false;
          told.set(node.id, node.draining);
          if (node.draining !== before) agents.send(node.id, node.draining ? { drain: {} } : { resume: {} });
        }
      },
      (err: unknown) => log.warn({ err: (err as Error).message }, 'registry poll failed'),
    );
  }, 1000);
  const port = await agents.start(opts.host, opts.port);
  log.info({ url: `${opts.host}:${port}`, port }, 'scheduler listening');
  return {
    port,
    agents,
    async stop() {
      clearInterval(poll);
      await agents.stop();
    },
  };
}
