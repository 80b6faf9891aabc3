import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../core/database/database.js';
import { migrate } from '../../core/database/migrate.js';
import { createLogger } from '../../core/logger.js';
import { MemoryLiveState, type LiveLoad } from '../../core/storage/live-state.js';
import { PgNodeStore } from '../../core/storage/node-store.js';
import { AgentReporter } from '../../gpu-agent/reporter.js';
import { startScheduler, type SchedulerHandle } from '../../scheduler/scheduler-service.js';
import { dropSchema, PG_URL, uniqueName } from '../helpers/services.js';
import { Registry } from 'prom-client';

const log = createLogger({ name: 'test', level: 'silent' });
const schema = uniqueName('sy_sched');
let db: Database;
let scheduler: SchedulerHandle;
const loads: LiveLoad[] = [];
const registry = new Registry();

beforeAll(async () => {
  db = await openDatabase({ url: PG_URL, dataDir: '/nonexistent', poolSize: 2, schema, log });
  await migrate(db);
  const live = new MemoryLiveState();
  await live.subscribe((l) => loads.push(l));
  scheduler = await startScheduler({
    nodes: new PgNodeStore(db), db, live, log, host: '127.0.0.1', port: 0, reportIntervalMs: 100, registry,
    // This test takes the snapshots: a scheduled one at second :00 would make its own a no-op.
    snapshotSchedule: false,
  });
});

afterAll(async () => {
  await scheduler.stop();
  await db.close();
  await dropSchema(schema);
});

describe('scheduler jobs', () => {
  it('learns capacity from a busy node, sweeps it stale when it stops reporting, snapshots both', async () => {
    const { joinToken } = await new PgNodeStore(db).register({
      id: 'busy-1', region: 'r', cluster: 'c', url: 'http://127.0.0.1:1', engine: 'vllm', models: ['m'], tokensPerSecond: 1000, maxSequences: 4,
    });
    // A node running all 4 slots and generating 2 000 tokens/s, twice its declared capacity.
    const t0 = Date.now();
    const reporter = new AgentReporter({
      target: `127.0.0.1:${scheduler.port}`,
      hello: { node_id: 'busy-1', join_token: joinToken ?? '', engine_kind: 'vllm', engine_version: '', models: ['m'], agent_version: 't' },
      collect: async () => ({ timestamp_ms: Date.now(), gpus: [], engine: { running_requests: 4, waiting_requests: 2, generation_tokens_total: 2 * (Date.now() - t0) } }),
      log,
    });
    reporter.start();
    await expect.poll(() => loads.filter((l) => l.learnedTokensPerSecond !== undefined).length, { timeout: 10_000 }).toBeGreaterThan(5);
    const learned = scheduler.learner.learned('busy-1');
    expect(learned?.tokensPerSecond).toBeGreaterThan(1300); // moving from the 1 000 prior toward 2 000
    expect(learned?.tokensPerSecond).toBeLessThan(2300);

    scheduler.sweep();
    expect(scheduler.states.get('busy-1')).toBe('fresh');
    expect(await scheduler.snapshot()).toBe(1);
    reporter.stop();
    await expect.poll(() => (scheduler.sweep(), scheduler.states.get('busy-1')), { timeout: 5000 }).toBe('unhealthy');
    await new Promise((r) => setTimeout(r, 1000)); // snapshots are keyed by the second
    expect(await scheduler.snapshot()).toBe(1);
    expect(await registry.getSingleMetricAsString('switchyard_scheduler_nodes')).toMatch(/switchyard_scheduler_nodes\{state="unhealthy"\} 1/);
    const rows = await db.pool.query('SELECT state, declared_tokens_per_second, learned_tokens_per_second, observations FROM capacity_snapshots ORDER BY taken_at');
    expect(rows.rows.map((r: { state: string }) => r.state)).toEqual(['fresh', 'unhealthy']);
    expect(rows.rows[0]).toMatchObject({ declared_tokens_per_second: 1000 });
    expect(rows.rows[0].learned_tokens_per_second).toBeGreaterThan(1300);
  });

  it('counts a registered node whose agent never connected as no_agent (a refused agent shows up in the metric the alert reads)', async () => {
    await new PgNodeStore(db).register({
      id: 'never-joined', region: 'r', cluster: 'c', url: 'http://127.0.0.1:1', engine: 'vllm', models: ['m'], tokensPerSecond: 100, maxSequences: 1,
    });
    // The registry is re-read every 5 s off the sweep's path.
    await expect
      .poll(async () => (scheduler.sweep(), await registry.getSingleMetricAsString('switchyard_scheduler_nodes')), { timeout: 10_000, interval: 200 })
      .toMatch(/switchyard_scheduler_nodes\{state="no_agent"\} 1/);
  });
});
