import { timingSafeEqual } from 'node:crypto';
import type { Logger } from '../core/logger.js';
import type { LiveState } from '../core/storage/live-state.js';
import cron from 'node-cron';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Database } from '../core/database/database.js';
import type { NodeStore } from '../core/storage/node-store.js';
import { CapacityLearner } from './capacity-learner.js';
import { AgentService } from './agents/agent-service.js';

export type NodeFreshness = 'fresh' | 'stale' | 'unhealthy';

function schedulerMetrics(registry: Registry) {
  const registers = [registry];
  return {
    rejected: new Counter({
      name: 'switchyard_agent_connections_rejected_total',
      help: 'Agent streams refused, by reason (unauthenticated, no_hello, hello_timeout, auth_error).',
      labelNames: ['reason'],
      registers,
    }),
    clamped: new Counter({
      name: 'switchyard_agent_report_values_clamped_total',
      help: 'Report values the scheduler did not believe (clamped or dropped), by field.',
      labelNames: ['field'],
      registers,
    }),
    nodes: new Gauge({
      name: 'switchyard_scheduler_nodes',
      help: 'Nodes by agent state as of the last sweep: fresh, stale, unhealthy (reports stopped), no_agent (registered, but no agent connected to this scheduler: never started, or refused).',
      labelNames: ['state'],
      registers,
    }),
  };
}

export interface SchedulerOptions {
  readonly nodes: NodeStore;
  /** Capacity snapshots are written here (history for dashboards). */
  readonly db: Database;
  readonly live: LiveState;
  readonly log: Logger;
  readonly host: string;
  readonly port: number;
  readonly reportIntervalMs: number;
  readonly staleAfterIntervals?: number;
  readonly unhealthyAfterIntervals?: number;
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer } | undefined;
  /** Where the scheduler's metrics go (the process's one registry). */
  readonly registry: Registry;
  /**
   * node-cron expression of the capacity snapshot; default every minute at second 0. `false`: none
   * scheduled (tests call `snapshot()` themselves: one scheduled in the same second would turn
   * theirs into a no-op, snapshots being keyed by node and second).
   */
  readonly snapshotSchedule?: string | false;
  /**
   * Nodes of regions.yaml whose agents run in this process (`switchyard start`): admitted with a
   * token made at start, their declared capacity the learner's prior. Registered nodes use the registry.
   */
  readonly localAgents?: ReadonlyMap<string, LocalAgent>;
}

export interface LocalAgent {
  readonly joinToken: string;
  readonly tokensPerSecond: number;
  readonly maxSequences: number;
}

export interface SchedulerHandle {
  readonly port: number;
  readonly agents: AgentService;
  readonly learner: CapacityLearner;
  /** Node id → fresh | stale | unhealthy, as of the last sweep. */
  readonly states: ReadonlyMap<string, NodeFreshness>;
  /** The jobs node-cron runs, callable directly (tests, operators). */
  sweep(): void;
  snapshot(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * The scheduler: agents connect with their node's join token (checked against the registry) and
 * stream load; each report goes out to every gateway through LiveState. An operator's drain or
 * resume reaches the node's agent within about a second (the registry is polled for changes).
 */
export async function startScheduler(opts: SchedulerOptions): Promise<SchedulerHandle> {
  const { nodes, live, log } = opts;
  const metrics = schedulerMetrics(opts.registry);
  const learner = new CapacityLearner();
  // Declared capacities of registered nodes (the learner's prior), refreshed with the registry.
  const declared = new Map<string, { tokensPerSecond: number; maxSequences: number }>();
  const remember = (n: { id: string; tokensPerSecond: number; maxSequences: number }): void => {
    declared.set(n.id, { tokensPerSecond: n.tokensPerSecond, maxSequences: n.maxSequences });
  };
  for (const [id, local] of opts.localAgents ?? []) remember({ id, ...local });
  const verify = (id: string, token: string): Promise<boolean> => {
    const local = opts.localAgents?.get(id);
    if (local === undefined) return nodes.verifyJoinToken(id, token);
    const given = Buffer.from(token);
    const want = Buffer.from(local.joinToken);
    return Promise.resolve(given.length === want.length && timingSafeEqual(given, want));
  };
  const agents = new AgentService({
    auth: { verify },
    log,
    reportIntervalMs: opts.reportIntervalMs,
    tls: opts.tls,
    onRejected: (reason) => metrics.rejected.inc({ reason }),
    onClamped: (field) => metrics.clamped.inc({ field: field.replace(/\[\d+\]/, '[]') }),
    initialCommands: async (id) => {
      const node = await nodes.get(id);
      if (node !== undefined) remember(node);
      return node?.draining === true ? [{ drain: {} }] : [];
    },
    onReport: (view) => {
      const r = view.lastReport;
      if (r === undefined) return;
      const atMs = Date.now();
      const prior = declared.get(view.nodeId);
      const learned =
        prior === undefined
          ? undefined
          : learner.observe(view.nodeId, prior, { generationTokensTotal: r.engine.generation_tokens_total, running: r.engine.running_requests, atMs });
      live.publish({
        nodeId: view.nodeId,
        running: r.engine.running_requests,
        waiting: r.engine.waiting_requests,
        kvCacheUsage: r.engine.kv_cache_usage,
        atMs,
        engineDown: r.engine.engine_unreachable === true,
        // Sent once it rests on observations; until then gateways plan with the declared value.
        learnedTokensPerSecond: learned !== undefined && learned.observations > 0 ? learned.tokensPerSecond : undefined,
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
          remember(node);
          const before = told.get(node.id) ?? false;
          told.set(node.id, node.draining);
          if (node.draining !== before) agents.send(node.id, node.draining ? { drain: {} } : { resume: {} });
        }
      },
      (err: unknown) => log.warn({ err: (err as Error).message }, 'registry poll failed'),
    );
  }, 1000);
  // The registry's node ids, for nodes with no agent at all (refreshed off the sweep's path).
  let registered: readonly string[] = [];
  const refreshRegistered = (): void => {
    nodes.list().then(
      (list) => {
        registered = list.map((n) => n.id);
      },
      (err: unknown) => log.warn({ err: (err as Error).message }, 'registry list failed'),
    );
  };
  refreshRegistered();
  const registryTimer = setInterval(refreshRegistered, 5000);
  registryTimer.unref();
  // Stale sweep: a node whose reports stopped is stale after `staleAfter` intervals (gateways stop
  // routing to it on their own clock too) and unhealthy after `unhealthyAfter` or once disconnected.
  const states = new Map<string, NodeFreshness>();
  const staleAfter = opts.staleAfterIntervals ?? 3;
  const unhealthyAfter = opts.unhealthyAfterIntervals ?? 10;
  const sweep = (): void => {
    const now = Date.now();
    for (const view of agents.agents.values()) {
      const age = now - (view.lastReport?.atMs ?? view.connectedAt);
      const state: NodeFreshness =
        age > unhealthyAfter * view.reportIntervalMs ? 'unhealthy' : age > staleAfter * view.reportIntervalMs ? 'stale' : 'fresh';
      if (states.get(view.nodeId) !== state) log.info({ nodeId: view.nodeId, state, ageMs: age }, 'node freshness changed');
      states.set(view.nodeId, state);
    }
    for (const id of states.keys()) if (!agents.agents.has(id)) states.set(id, 'unhealthy');
    // Every state always has a series (0 when no node is in it): alerts and panels on stale or
    // unhealthy nodes then evaluate to 0 rather than to "no data".
    for (const state of ['fresh', 'stale', 'unhealthy', 'no_agent'] as const) metrics.nodes.set({ state }, 0);
    for (const state of states.values()) metrics.nodes.inc({ state });
    // Registered nodes this scheduler never heard from (a restarted scheduler whose agents are
    // refused has no freshness for them at all): without this they would count nowhere.
    for (const id of registered) if (!states.has(id)) metrics.nodes.inc({ state: 'no_agent' });
  };
  const snapshot = async (): Promise<number> => {
    const rows = [...states.entries()].map(([id, state]) => {
      const report = agents.agents.get(id)?.lastReport;
      const learned = learner.learned(id);
      return [id, state, declared.get(id)?.tokensPerSecond ?? null, learned?.tokensPerSecond ?? null, learned?.observations ?? 0,
        report?.engine.running_requests ?? null, report?.engine.waiting_requests ?? null, report?.engine.kv_cache_usage ?? null];
    });
    if (rows.length === 0) return 0;
    const cols = rows[0]?.map((_, i) => rows.map((r) => r[i])) ?? [];
    const res = await opts.db.pool.query(
      `INSERT INTO capacity_snapshots (node_id, taken_at, state, declared_tokens_per_second, learned_tokens_per_second,
         observations, running_requests, waiting_requests, kv_cache_usage)
       SELECT n, date_trunc('second', now()), s, d, l, o, r, w, k
       FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::int[], $6::float8[], $7::float8[], $8::float8[]) AS t(n, s, d, l, o, r, w, k)
       ON CONFLICT DO NOTHING`,
      cols,
    );
    return res.rowCount ?? 0;
  };
  const jobs = [cron.schedule('* * * * * *', sweep, { name: 'stale-sweep', noOverlap: true })];
  const snapshotSchedule = opts.snapshotSchedule ?? '0 * * * * *';
  if (snapshotSchedule !== false) {
    const takeSnapshot = () => snapshot().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'capacity snapshot failed'));
    jobs.push(cron.schedule(snapshotSchedule, takeSnapshot, { name: 'capacity-snapshot', noOverlap: true }));
  }
  const port = await agents.start(opts.host, opts.port);
  log.info({ url: `${opts.host}:${port}`, port }, 'scheduler listening');
  return {
    port,
    agents,
    learner,
    states,
    sweep,
    snapshot,
    async stop() {
      clearInterval(poll);
      clearInterval(registryTimer);
      await Promise.all(jobs.map((j) => j.destroy()));
      await agents.stop();
    },
  };
}
