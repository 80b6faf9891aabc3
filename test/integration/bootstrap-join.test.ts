import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../core/database/database.js';
import { migrate } from '../../core/database/migrate.js';
import { createLogger } from '../../core/logger.js';
import { MemoryLiveState } from '../../core/storage/live-state.js';
import { PgNodeStore } from '../../core/storage/node-store.js';
import { startAgent, type AgentBootstrap, type AgentHandle } from '../../gpu-agent/agent.js';
import { startScheduler, type SchedulerHandle } from '../../scheduler/scheduler-service.js';
import { DEFAULT_SIM_OPTIONS } from '../../sim/sim-options.js';
import { startSim, type SimServer } from '../../sim/sim-server.js';
import { dropSchema, PG_URL, uniqueName } from '../helpers/services.js';

/**
 * Agents that register their own node with a bootstrap token, against a real scheduler, the real
 * Postgres registry and a `switchyard sim` engine: join, restart as the same node, refusals with
 * their reasons, and the removal of nodes whose agent has gone.
 */
const log = createLogger({ name: 'test', level: 'silent' });
const schema = uniqueName('sy_boot');
let db: Database;
let nodes: PgNodeStore;
let scheduler: SchedulerHandle;
let sim: SimServer;
const registry = new Registry();
const agents: AgentHandle[] = [];

beforeAll(async () => {
  db = await openDatabase({ url: PG_URL, dataDir: '/nonexistent', poolSize: 4, schema, log });
  await migrate(db);
  nodes = new PgNodeStore(db);
  sim = await startSim({ ...DEFAULT_SIM_OPTIONS, port: 0, models: ['llama-boot'], tokensPerSecond: 5000, maxSeqs: 8, ttftMs: 0, seed: 1 });
  scheduler = await startScheduler({
    nodes, db, live: new MemoryLiveState(), log, host: '127.0.0.1', port: 0, reportIntervalMs: 100, registry,
    snapshotSchedule: false, ghostNodeAfterMs: 1500, housekeepingIntervalMs: 200,
  });
});

afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop();
});

afterAll(async () => {
  await scheduler.stop();
  await sim.close();
  await db.close();
  await dropSchema(schema);
});

async function agent(nodeId: string, boot: Partial<AgentBootstrap> & { token: string }): Promise<AgentHandle> {
  const a = await startAgent({
    schedulerTarget: `127.0.0.1:${scheduler.port}`, nodeId, joinToken: '', engineUrl: sim.url, host: '127.0.0.1', metricsPort: 0, log, version: 'test',
    bootstrap: { tokensPerSecond: 1200, maxSequences: 6, advertiseUrl: `http://pod-ip.invalid:8000`, ...boot },
    exec: async () => ({ stdout: '', stderr: 'nvidia-smi: not found', exitCode: 127 }),
  });
  agents.push(a);
  return a;
}

const connected = (id: string): boolean => scheduler.agents.agents.has(id);
const rejected = async (reason: string): Promise<number> =>
  (await registry.getSingleMetric('switchyard_agent_connections_rejected_total')?.get())?.values.find((v) => v.labels['reason'] === reason)?.value ?? 0;

describe('agents that join with a bootstrap token', () => {
  it('registers its node in the token\'s region and cluster with the engine\'s models, and gets its own credential (kept 0600)', async () => {
    const { record, secret } = await nodes.bootstrapTokens.create({ region: 'eu-west', cluster: 'gpu-a', maxUses: 5 });
    const dir = mkdtempSync(join(tmpdir(), 'sy-cred-'));
    const credentialFile = join(dir, 'credential');
    const a = await agent('vllm-0', { token: secret, credentialFile });
    await expect.poll(() => connected('vllm-0'), { timeout: 10_000 }).toBe(true);
    const node = await nodes.get('vllm-0');
    expect(node).toMatchObject({
      region: 'eu-west', cluster: 'gpu-a', url: 'http://pod-ip.invalid:8000', engine: 'vllm', models: ['llama-boot'],
      tokensPerSecond: 1200, maxSequences: 6, bootstrapTokenId: record.id,
    });
    await expect.poll(() => a.reporter.credential !== undefined).toBe(true);
    const credential = a.reporter.credential ?? '';
    expect(await nodes.verifyJoinToken('vllm-0', credential)).toBe(true);
    await expect.poll(() => { try { return readFileSync(credentialFile, 'utf8').trim(); } catch { return ''; } }).toBe(credential);
    expect(statSync(credentialFile).mode & 0o777).toBe(0o600);
    expect((await nodes.bootstrapTokens.list()).find((t) => t.id === record.id)?.uses).toBe(1);
    // Reports flow like any registered node's.
    await expect.poll(() => scheduler.agents.agents.get('vllm-0')?.lastReport !== undefined).toBe(true);
  });

  it('a restarted agent is the same node: re-joining with the token uses no new slot; with its credential file it needs no live token', async () => {
    const { record, secret } = await nodes.bootstrapTokens.create({ region: 'eu-west', cluster: 'gpu-a', maxUses: 1 });
    const dir = mkdtempSync(join(tmpdir(), 'sy-cred-'));
    const credentialFile = join(dir, 'credential');
    const first = await agent('vllm-1', { token: secret });
    await expect.poll(() => connected('vllm-1'), { timeout: 10_000 }).toBe(true);
    const before = await nodes.get('vllm-1');
    await nodes.setDraining('vllm-1', true); // operator state survives the restart
    await first.stop();
    agents.splice(agents.indexOf(first), 1);
    await expect.poll(() => connected('vllm-1')).toBe(false);

    // Same id, same token (max_uses 1, already used by this very node): admitted, same node.
    const second = await agent('vllm-1', { token: secret, credentialFile });
    await expect.poll(() => connected('vllm-1'), { timeout: 10_000 }).toBe(true);
    const after = await nodes.get('vllm-1');
    expect(after?.createdAt.getTime()).toBe(before?.createdAt.getTime());
    expect(after?.draining).toBe(true);
    expect((await nodes.bootstrapTokens.list()).find((t) => t.id === record.id)?.uses).toBe(1);
    await expect.poll(() => { try { return readFileSync(credentialFile, 'utf8').trim(); } catch { return ''; } }).toBe(second.reporter.credential);
    await second.stop();
    agents.splice(agents.indexOf(second), 1);
    await expect.poll(() => connected('vllm-1')).toBe(false);

    // The token is revoked; the third start reads its credential file and connects with it.
    await nodes.bootstrapTokens.revoke(record.id);
    const third = await agent('vllm-1', { token: secret, credentialFile });
    await expect.poll(() => connected('vllm-1'), { timeout: 10_000 }).toBe(true);
    expect(third.reporter.refusal).toBeUndefined();
  });

  it('refuses expired, revoked, used-up and unknown tokens, and ids an operator registered, each with its reason', async () => {
    const expired = await nodes.bootstrapTokens.create({ region: 'eu-west', cluster: 'c', expiresAt: new Date(Date.now() - 60_000) });
    const revoked = await nodes.bootstrapTokens.create({ region: 'eu-west', cluster: 'c' });
    await nodes.bootstrapTokens.revoke(revoked.record.id);
    const once = await nodes.bootstrapTokens.create({ region: 'eu-west', cluster: 'c', maxUses: 1 });
    const usedUp = await agent('once-a', { token: once.secret });
    await expect.poll(() => connected('once-a'), { timeout: 10_000 }).toBe(true);
    await nodes.register({ id: 'manual-1', region: 'eu-west', cluster: 'c', url: 'http://127.0.0.1:1', engine: 'vllm', models: ['m'], tokensPerSecond: 1, maxSequences: 1 });

    const cases = [
      { id: 'exp-1', token: expired.secret, code: 'UNAUTHENTICATED', details: /expired at/, reason: 'bootstrap_expired' },
      { id: 'rev-1', token: revoked.secret, code: 'UNAUTHENTICATED', details: /was revoked/, reason: 'bootstrap_revoked' },
      { id: 'once-b', token: once.secret, code: 'UNAUTHENTICATED', details: /used up \(1 of 1 nodes joined\)/, reason: 'bootstrap_used_up' },
      { id: 'unk-1', token: 'sy-boot-nope', code: 'UNAUTHENTICATED', details: /unknown bootstrap token/, reason: 'bootstrap_unknown_token' },
      { id: 'manual-1', token: once.secret, code: 'PERMISSION_DENIED', details: /registered by an operator/, reason: 'bootstrap_node_taken' },
    ];
    for (const c of cases) {
      const a = await agent(c.id, { token: c.token });
      await expect.poll(() => a.reporter.refusal?.code, { timeout: 10_000 }).toBe(c.code);
      expect(a.reporter.refusal?.details, c.id).toMatch(c.details);
      expect(await rejected(c.reason), c.reason).toBeGreaterThan(0);
      // The agent says it is unhealthy, and why.
      const health = await fetch(`${a.metricsUrl}/healthz`);
      expect(health.status).toBe(503);
      expect(await health.text()).toMatch(c.details);
      expect(connected(c.id)).toBe(false);
    }
    expect(await nodes.get('exp-1')).toBeUndefined();
    expect(await nodes.get('once-b')).toBeUndefined();
    expect((await nodes.get('manual-1'))?.bootstrapTokenId).toBeNull();
    expect(usedUp.reporter.refusal).toBeUndefined();
  });

  it('removes a self-registered node whose agent has been gone longer than the setting; keeps connected and operator-registered nodes', async () => {
    const { secret } = await nodes.bootstrapTokens.create({ region: 'eu-north', cluster: 'c' });
    const leaving = await agent('ghost-1', { token: secret });
    await agent('staying-1', { token: secret });
    await nodes.register({ id: 'manual-2', region: 'eu-north', cluster: 'c', url: 'http://127.0.0.1:1', engine: 'vllm', models: ['m'], tokensPerSecond: 1, maxSequences: 1 });
    await expect.poll(() => connected('ghost-1') && connected('staying-1'), { timeout: 10_000 }).toBe(true);
    await leaving.stop();
    agents.splice(agents.indexOf(leaving), 1);
    const ghosts = async (): Promise<number> => (await registry.getSingleMetric('switchyard_scheduler_ghost_nodes_removed_total')?.get())?.values[0]?.value ?? 0;
    const removedBefore = await ghosts();
    await expect.poll(async () => (await scheduler.housekeeping(), await nodes.get('ghost-1')), { timeout: 10_000 }).toBeUndefined();
    // Earlier tests' stopped agents left ghosts too (vllm-0, once-a…): removed in the same rounds.
    expect(await ghosts()).toBeGreaterThan(removedBefore);
    expect(await nodes.get('vllm-0')).toBeUndefined();
    // The connected agent's node is seen at every housekeeping round; the operator's node stays.
    expect(await nodes.get('staying-1')).toBeDefined();
    expect(await nodes.get('manual-2')).toBeDefined();
  });
});
