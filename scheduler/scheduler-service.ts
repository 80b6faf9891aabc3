import { timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../core/logger.js';
import type { GpuSummary, LiveState } from '../core/storage/live-state.js';
import cron from 'node-cron';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Database } from '../core/database/database.js';
import type { NodeRecord, NodeStore } from '../core/storage/node-store.js';
import type { Hello } from '../proto/agent-protocol.js';
import { CapacityLearner } from './capacity-learner.js';
import { AgentService, type BootstrapResult } from './agents/agent-service.js';
import { soleLeader, type LeaderElection } from './leader-lock.js';

export type NodeFreshness = 'fresh' | 'stale' | 'unhealthy';

const NODE_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const ENGINES: ReadonlySet<string> = new Set(['vllm', 'sglang', 'llamacpp', 'tgi', 'ollama', 'openai']);

function schedulerMetrics(registry: Registry) {
  const registers = [registry];
  return {
    rejected: new Counter({
      name: 'switchyard_agent_connections_rejected_total',
      help: 'Agent streams refused, by reason (unauthenticated, no_hello, hello_timeout, auth_error, bootstrap_<why>).',
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
    leader: new Gauge({ name: 'switchyard_scheduler_leader', help: '1 on the scheduler replica that runs the region-wide jobs (ghost cleanup, the no_agent count), else 0.', registers }),
    ghosts: new Counter({ name: 'switchyard_scheduler_ghost_nodes_removed_total', help: 'Self-registered nodes removed because no agent had been seen for them for SWITCHYARD_GHOST_NODE_AFTER_MS.', registers }),
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
  /**
   * Who runs the region-wide jobs when several scheduler replicas share a region (a Redis lock);
   * absent: this one (a single scheduler).
   */
  readonly leader?: LeaderElection | undefined;
  /** Self-registered nodes whose agent no scheduler has seen for this long are removed; 0: never. Default 10 min. */
  readonly ghostNodeAfterMs?: number;
  /** How often connected agents are marked seen in the registry, the registry re-read and the lease renewed. Default 5 s. */
  readonly housekeepingIntervalMs?: number;
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
  /** Leader election, registry refresh, agents marked seen, ghost cleanup on the leader. */
  housekeeping(): Promise<void>;
  isLeader(): boolean;
  stop(): Promise<void>;
}

/**
 * The scheduler: agents connect with their node's join token (checked against the registry), or
 * register their node themselves with a bootstrap token, and stream load; each report goes out to
 * every gateway through LiveState. An operator's drain or resume reaches the node's agent within
 * about a second (the registry is polled for changes).
 *
 * Several replicas may serve one region (agents connect to any). Each replica sweeps, meters and
 * snapshots only the agents connected to it, so those jobs are partitioned rather than doubled
 * (snapshots are keyed by node and second besides). What concerns the whole registry, counting
 * nodes no agent is connected to and removing self-registered ghosts, runs on the leader only.
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
  const leader = opts.leader ?? soleLeader;
  const join = async (hello: Hello): Promise<BootstrapResult> => {
    const refused = (code: grpc.status, reason: string, details: string): BootstrapResult => ({ ok: false, code, reason: `bootstrap_${reason}`, details });
    const spec = hello.spec;
    if (!NODE_ID.test(hello.node_id)) return refused(grpc.status.INVALID_ARGUMENT, 'bad_spec', `node id '${hello.node_id}' is not valid: lower-case letters, digits, '.', '_', '-', at most 63`);
    if (opts.localAgents?.has(hello.node_id)) return refused(grpc.status.PERMISSION_DENIED, 'node_taken', `node id '${hello.node_id}' is declared in regions.yaml`);
    if (spec == null || !/^https?:\/\/[^\s?#]+$/.test(spec.url)) return refused(grpc.status.INVALID_ARGUMENT, 'bad_spec', 'a bootstrap Hello needs spec.url, the engine as gateways reach it (http or https)');
    if (!ENGINES.has(spec.engine)) return refused(grpc.status.INVALID_ARGUMENT, 'bad_spec', `engine '${spec.engine}' is not one of ${[...ENGINES].join(', ')}`);
    if (!(spec.tokens_per_second > 0) || !(spec.max_sequences >= 1)) return refused(grpc.status.INVALID_ARGUMENT, 'bad_spec', 'capacity needs tokens_per_second > 0 and max_sequences >= 1');
    // Not a refusal: an engine still loading its weights lists nothing yet; the agent retries.
    if (hello.models.length === 0) return refused(grpc.status.FAILED_PRECONDITION, 'no_models', "the engine's /v1/models lists no model yet");
    const result = await nodes.bootstrapTokens.join(hello.bootstrap_token ?? '', {
      id: hello.node_id, url: spec.url.replace(/\/+$/, ''), engine: spec.engine, models: hello.models,
      tokensPerSecond: spec.tokens_per_second, maxSequences: spec.max_sequences,
    });
    if (!result.ok) {
      log.warn({ nodeId: hello.node_id, reason: result.reason }, `self-registration refused: ${result.message}`);
      return refused(result.reason === 'node_taken' ? grpc.status.PERMISSION_DENIED : grpc.status.UNAUTHENTICATED, result.reason, result.message);
    }
    remember(result.record);
    const r = result.record;
    log.info({ nodeId: r.id, region: r.region, cluster: r.cluster, models: r.models }, result.created ? 'node registered itself' : 'self-registered node re-joined');
    return { ok: true, credential: result.joinToken, region: r.region, cluster: r.cluster };
  };
  const agents = new AgentService({
    auth: { verify },
    bootstrap: { join },
    log,
    onAccepted: (id) => {
      lostAt.delete(id);
      if (opts.localAgents?.has(id) !== true) nodes.touchAgents([id]).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'marking the agent seen failed'));
    },
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
        gpu: gpuSummary(r.gpus),
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
  // The registry, for nodes with no agent at all (refreshed off the sweep's path).
  let registered: readonly NodeRecord[] = [];
  // When each node's agent left this replica: it is unhealthy here until another replica marks it
  // seen (it moved) or the registry drops it.
  const lostAt = new Map<string, number>();
  const housekeepingMs = opts.housekeepingIntervalMs ?? 5000;
  const ghostAfterMs = opts.ghostNodeAfterMs ?? 600_000;
  const connectedIds = (): string[] => [...agents.agents.keys()].filter((id) => opts.localAgents?.has(id) !== true);
  const refreshRegistered = async (): Promise<void> => {
    registered = await nodes.list();
    const byId = new Map(registered.map((n) => [n.id, n]));
    for (const [id, at] of lostAt) {
      const seen = byId.get(id)?.agentSeenAt?.getTime();
      if (!byId.has(id) || (seen !== undefined && seen > at + 1000)) {
        lostAt.delete(id);
        states.delete(id);
      }
    }
  };
  const removeGhosts = async (): Promise<void> => {
    if (ghostAfterMs <= 0 || !leader.isLeader()) return;
    const removed = await nodes.removeGhosts(ghostAfterMs, connectedIds());
    for (const id of removed) log.info({ nodeId: id, goneForMs: ghostAfterMs }, 'self-registered node removed: its agent has been gone too long');
    metrics.ghosts.inc(removed.length);
    if (removed.length > 0) await refreshRegistered();
  };
  let housekeepingRun: Promise<void> | undefined;
  const housekeeping = (): Promise<void> => {
    housekeepingRun ??= (async () => {
      for (const step of [() => leader.tick().then(() => undefined), () => nodes.touchAgents(connectedIds()), refreshRegistered, removeGhosts]) {
        await step().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'scheduler housekeeping step failed'));
      }
      metrics.leader.set(leader.isLeader() ? 1 : 0);
    })().finally(() => {
      housekeepingRun = undefined;
    });
    return housekeepingRun;
  };
  const registryTimer = setInterval(() => void housekeeping(), housekeepingMs);
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
    for (const id of states.keys()) {
      if (agents.agents.has(id)) continue;
      if (!lostAt.has(id)) lostAt.set(id, now);
      // A follower forgets an agent that left it: the leader counts a node no agent is connected to.
      if (leader.isLeader() || opts.localAgents?.has(id) === true) states.set(id, 'unhealthy');
      else {
        states.delete(id);
        lostAt.delete(id);
      }
    }
    // Every state always has a series (0 when no node is in it): alerts and panels on stale or
    // unhealthy nodes then evaluate to 0 rather than to "no data".
    for (const state of ['fresh', 'stale', 'unhealthy', 'no_agent'] as const) metrics.nodes.set({ state }, 0);
    for (const state of states.values()) metrics.nodes.inc({ state });
    // Registered nodes with no agent on any replica (a restarted scheduler whose agents are refused
    // has no freshness for them at all): without this they would count nowhere. The leader counts
    // them; an agent another replica marked seen lately is that replica's to count.
    if (leader.isLeader()) {
      for (const n of registered) {
        const seen = n.agentSeenAt?.getTime();
        if (!states.has(n.id) && (seen === undefined || now - seen > 3 * housekeepingMs)) metrics.nodes.inc({ state: 'no_agent' });
      }
    }
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
  void housekeeping();
  const port = await agents.start(opts.host, opts.port);
  log.info({ url: `${opts.host}:${port}`, port }, 'scheduler listening');
  return {
    port,
    agents,
    learner,
    states,
    sweep,
    snapshot,
    housekeeping,
    isLeader: () => leader.isLeader(),
    async stop() {
      clearInterval(poll);
      clearInterval(registryTimer);
      await Promise.all(jobs.map((j) => j.destroy()));
      await housekeepingRun;
      await agents.stop();
      await leader.release();
    },
  };
}

/** The report's GPUs summed up for the gateways (their dashboards and the console). */
function gpuSummary(gpus: ReadonlyArray<{ utilization?: number | undefined; memory_used_bytes?: number | undefined; memory_total_bytes?: number | undefined }>): GpuSummary | undefined {
  if (gpus.length === 0) return undefined;
  const sum = (values: Array<number | undefined>): number | null => {
    const known = values.filter((v): v is number => typeof v === 'number');
    return known.length === 0 ? null : known.reduce((a, b) => a + b, 0);
  };
  const utilizations = gpus.map((g) => g.utilization).filter((v): v is number => typeof v === 'number');
  return {
    count: gpus.length,
    utilization: utilizations.length === 0 ? null : utilizations.reduce((a, b) => a + b, 0) / utilizations.length,
    memoryUsedBytes: sum(gpus.map((g) => g.memory_used_bytes)),
    memoryTotalBytes: sum(gpus.map((g) => g.memory_total_bytes)),
  };
}
