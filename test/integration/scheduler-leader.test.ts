import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../core/database/database.js';
import { migrate } from '../../core/database/migrate.js';
import { createLogger } from '../../core/logger.js';
import { MemoryLiveState } from '../../core/storage/live-state.js';
import { PgNodeStore } from '../../core/storage/node-store.js';
import { AgentReporter } from '../../gpu-agent/reporter.js';
import { RedisLeaderLock } from '../../scheduler/leader-lock.js';
import { startScheduler, type SchedulerHandle } from '../../scheduler/scheduler-service.js';
import { dropSchema, PG_URL, testRedis, uniqueName } from '../helpers/services.js';

/**
 * Two scheduler replicas of one region on the machine's Redis and Postgres: one leads (a Redis
 * lock), the jobs over the whole registry run once, each replica meters and snapshots only its own
 * agents, and the follower takes over when the leader stops.
 */
const log = createLogger({ name: 'test', level: 'silent' });
const schema = uniqueName('sy_leader');
const prefix = `${uniqueName('sy_leader')}:`;
const redis = testRedis(prefix);
let db: Database;
let nodes: PgNodeStore;
const replicas: Array<{ handle: SchedulerHandle; registry: Registry; lock: RedisLeaderLock }> = [];
const reporters: AgentReporter[] = [];

async function replica(): Promise<{ handle: SchedulerHandle; registry: Registry; lock: RedisLeaderLock }> {
  const registry = new Registry();
  const lock = new RedisLeaderLock({ redis: redis.connect(), key: `${prefix}scheduler:leader`, leaseMs: 2000 });
  const handle = await startScheduler({
    nodes, db, live: new MemoryLiveState(), log, host: '127.0.0.1', port: 0, reportIntervalMs: 100, registry,
    snapshotSchedule: false, leader: lock, housekeepingIntervalMs: 200, ghostNodeAfterMs: 0,
  });
  const r = { handle, registry, lock };
  replicas.push(r);
  return r;
}

beforeAll(async () => {
  db = await openDatabase({ url: PG_URL, dataDir: '/nonexistent', poolSize: 4, schema, log });
  await migrate(db);
  nodes = new PgNodeStore(db);
});

afterAll(async () => {
  for (const r of reporters) r.stop();
  for (const r of replicas) await r.handle.stop();
  await redis.cleanup();
  await db.close();
  await dropSchema(schema);
});

async function gauge(registry: Registry, state: string): Promise<number> {
  const metric = await registry.getSingleMetric('switchyard_scheduler_nodes')?.get();
  return metric?.values.find((v) => v.labels['state'] === state)?.value ?? 0;
}

async function connect(id: string, port: number): Promise<void> {
  const { joinToken } = await nodes.register({ id, region: 'r', cluster: 'c', url: 'http://127.0.0.1:1', engine: 'vllm', models: ['m'], tokensPerSecond: 100, maxSequences: 2 });
  const reporter = new AgentReporter({
    target: `127.0.0.1:${port}`,
    hello: { node_id: id, join_token: joinToken ?? '', engine_kind: 'vllm', engine_version: '', models: ['m'], agent_version: 't' },
    collect: async () => ({ timestamp_ms: Date.now(), gpus: [], engine: { running_requests: 0, waiting_requests: 0 } }),
    log,
  });
  reporter.start();
  reporters.push(reporter);
}

describe('scheduler replicas sharing a region', () => {
  it('elect one leader; registry-wide counts and snapshots are not doubled; the follower takes over when the leader stops', async () => {
    const a = await replica();
    const b = await replica();
    await Promise.all([a.handle.housekeeping(), b.handle.housekeeping()]);
    await Promise.all([a.handle.housekeeping(), b.handle.housekeeping()]);
    expect([a.handle.isLeader(), b.handle.isLeader()].filter(Boolean)).toHaveLength(1);
    const [leader, follower] = a.handle.isLeader() ? [a, b] : [b, a];

    await connect('on-leader', leader.handle.port);
    await connect('on-follower', follower.handle.port);
    await nodes.register({ id: 'no-agent', region: 'r', cluster: 'c', url: 'http://127.0.0.1:1', engine: 'vllm', models: ['m'], tokensPerSecond: 100, maxSequences: 2 });
    await expect.poll(() => leader.handle.agents.agents.has('on-leader') && follower.handle.agents.agents.has('on-follower'), { timeout: 10_000 }).toBe(true);
    // Both replicas mark their agents seen and re-read the registry.
    await Promise.all([a.handle.housekeeping(), b.handle.housekeeping()]);
    for (const r of [a, b]) r.handle.sweep();

    const sum = async (state: string): Promise<number> => (await gauge(a.registry, state)) + (await gauge(b.registry, state));
    expect(await sum('fresh')).toBe(2);
    expect(await sum('no_agent')).toBe(1); // the leader's count only; each replica would say 2 alone
    expect(await gauge(follower.registry, 'no_agent')).toBe(0);
    expect(await gauge(leader.registry, 'no_agent')).toBe(1);

    // Each replica snapshots its own agents: one row per node, none written twice.
    expect(await leader.handle.snapshot()).toBe(1);
    expect(await follower.handle.snapshot()).toBe(1);
    const rows = await db.pool.query<{ node_id: string }>('SELECT node_id FROM capacity_snapshots ORDER BY node_id');
    expect(rows.rows.map((r) => r.node_id)).toEqual(['on-follower', 'on-leader']);

    // The leader stops (releasing the lock): the follower leads at its next renewal.
    await leader.handle.stop();
    replicas.splice(replicas.indexOf(leader), 1);
    await expect.poll(async () => (await follower.handle.housekeeping(), follower.handle.isLeader()), { timeout: 10_000 }).toBe(true);
    follower.handle.sweep();
    expect(await gauge(follower.registry, 'no_agent')).toBeGreaterThanOrEqual(1);
  });

  it('a lock holder that stops renewing loses leadership on its own clock before another replica can take over', async () => {
    let now = 1_000_000;
    const key = `${prefix}lease-test`;
    const first = new RedisLeaderLock({ redis: redis.connect(), key, leaseMs: 1000, now: () => now });
    const second = new RedisLeaderLock({ redis: redis.connect(), key, leaseMs: 1000, now: () => now });
    expect(await first.tick()).toBe(true);
    expect(await second.tick()).toBe(false);
    expect(await first.tick()).toBe(true); // renewal by the holder
    now += 600; // past half the lease with no renewal: the holder no longer believes it leads
    expect(first.isLeader()).toBe(false);
    await first.release();
    expect(await second.tick()).toBe(true);
    expect(await first.tick()).toBe(false);
  });
});
