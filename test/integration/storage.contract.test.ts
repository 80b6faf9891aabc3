import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../core/database/database.js';
import { migrate } from '../../core/database/migrate.js';
import { PgKeyStore } from '../../core/storage/key-store.js';
import { MemoryUsageBuffer, RedisUsageBuffer, type UsageBuffer } from '../../core/storage/usage-buffer.js';
import { UsageFlusher } from '../../core/storage/usage-flusher.js';
import { PgUsageStore, type UsageRecord, type UsageStore } from '../../core/storage/usage-store.js';
import { redisBackends } from '../helpers/redis-topologies.js';
import { dropSchema, PG_URL, uniqueName } from '../helpers/services.js';

const log = { info: () => undefined, warn: () => undefined };
const schema = uniqueName('sy_store');
const dataDir = mkdtempSync(join(tmpdir(), 'switchyard-pglite-'));
const databases: Record<string, Database> = {};

beforeAll(async () => {
  databases['postgres'] = await openDatabase({ url: PG_URL, dataDir, poolSize: 4, schema, log });
  databases['embedded'] = await openDatabase({ dataDir, poolSize: 4, log });
  for (const db of Object.values(databases)) await migrate(db);
}, 60_000);

afterAll(async () => {
  for (const db of Object.values(databases)) await db.close();
  await dropSchema(schema);
});

let seq = 0;
function record(over: Partial<UsageRecord> = {}): UsageRecord {
  seq++;
  return {
    id: `u-${schema}-${seq}`, requestId: `req-${seq}`, tenantId: 'acme', keyId: 'key_1', model: 'm', region: 'r', nodeId: 'n1',
    promptTokens: 10, completionTokens: 5, ttftMs: 12.5, durationMs: 40, status: 200, errorCode: null, createdAt: new Date(), ...over,
  };
}

describe.each(['postgres', 'embedded'])('stores on %s', (which) => {
  const db = (): Database => databases[which] as Database;

  it('migrations are idempotent, also when started together', async () => {
    expect(await migrate(db())).toEqual([]);
    expect(await Promise.all([migrate(db()), migrate(db())])).toEqual([[], []]);
  });

  it('KeyStore: create, find by secret, list, revoke; secrets stored hashed', async () => {
    const keys = new PgKeyStore(db());
    const tenant = uniqueName('t');
    const { record: k, secret } = await keys.createKey({ tenant, name: 'web', limits: { requestsPerMinute: 1, tokensPerMinute: 2, maxConcurrent: 3 }, models: ['*'], priority: 'batch' });
    expect(secret).toMatch(/^sk-sy-[\w-]{40,}$/);
    expect(await keys.findBySecret(secret)).toMatchObject({ id: k.id, tenantId: tenant, priority: 'batch', limits: { requestsPerMinute: 1, tokensPerMinute: 2, maxConcurrent: 3 } });
    expect(await keys.findBySecret(secret + 'x')).toBeUndefined();
    const stored = await db().pool.query('SELECT key_hash FROM api_keys WHERE id = $1', [k.id]);
    expect(stored.rows[0].key_hash).not.toContain(secret);
    expect((await keys.listKeys(tenant)).map((r) => r.id)).toEqual([k.id]);
    const before = new Date(Date.now() - 1000);
    expect(await keys.revokeKey(k.id)).toBe(true);
    expect(await keys.revokeKey(k.id)).toBe(false);
    expect(await keys.findBySecret(secret)).toBeUndefined();
    expect(await keys.revokedSince(before)).toContain(k.id);
    expect((await keys.getKey(k.id))?.revokedAt).toBeInstanceOf(Date);
  });

  it("KeyStore: a tenant's share weight defaults to 1, can be set and updated, and comes with its keys", async () => {
    const keys = new PgKeyStore(db());
    const tenant = uniqueName('t');
    const { record, secret } = await keys.createKey({ tenant, name: 'a', limits: { requestsPerMinute: 0, tokensPerMinute: 0, maxConcurrent: 0 }, models: ['*'], priority: 'standard' });
    expect(record.tenantWeight).toBe(1);
    expect(await keys.createTenant({ id: tenant, weight: 3 })).toMatchObject({ id: tenant, name: tenant, weight: 3 });
    expect((await keys.findBySecret(secret))?.tenantWeight).toBe(3);
    expect((await keys.getKey(record.id))?.tenantWeight).toBe(3);
    // Re-posting without a weight keeps it.
    expect(await keys.createTenant({ id: tenant, name: 'Renamed' })).toMatchObject({ name: 'Renamed', weight: 3 });
    await expect(keys.createTenant({ id: tenant, weight: 0 })).rejects.toThrow();
  });

  it('KeyStore: deleting a tenant disables all its keys', async () => {
    const keys = new PgKeyStore(db());
    const tenant = uniqueName('t');
    await keys.createTenant({ id: tenant, name: 'Acme' });
    const { secret } = await keys.createKey({ tenant, name: 'a', limits: { requestsPerMinute: 0, tokensPerMinute: 0, maxConcurrent: 0 }, models: ['m'], priority: 'standard' });
    expect((await keys.listTenants()).find((t) => t.id === tenant)?.name).toBe('Acme');
    expect(await keys.deleteTenant(tenant)).toBe(true);
    expect(await keys.findBySecret(secret)).toBeUndefined();
  });

  it('UsageStore: batches are idempotent on the record id; aggregates by every dimension', async () => {
    const usage: UsageStore = new PgUsageStore(db());
    const tenant = uniqueName('t');
    const batch = [record({ tenantId: tenant }), record({ tenantId: tenant, status: 429, errorCode: 'rate_limit_exceeded', completionTokens: 0 }), record({ tenantId: tenant, model: 'm2' })];
    expect(await usage.insertBatch(batch)).toBe(3);
    expect(await usage.insertBatch([...batch, record({ tenantId: tenant })])).toBe(1);
    const from = new Date(Date.now() - 60_000);
    const to = new Date(Date.now() + 60_000);
    const byTenant = (await usage.aggregate({ from, to, groupBy: 'tenant' })).find((r) => r.group === tenant);
    expect(byTenant).toEqual({ group: tenant, requests: 4, promptTokens: 40, completionTokens: 15, errors: 1 });
    const byModel = await usage.aggregate({ from, to, groupBy: 'model' });
    expect(byModel.find((r) => r.group === 'm2')?.requests).toBeGreaterThanOrEqual(1);
    for (const g of ['key', 'region', 'node'] as const) expect((await usage.aggregate({ from, to, groupBy: g })).length).toBeGreaterThan(0);
  });

  it('UsageStore: every field is written as given, nulls and text with quotes and non-ASCII included', async () => {
    const usage = new PgUsageStore(db());
    const full = record({ requestId: 'req "quoted", é ✓', tenantId: 'acme', keyId: 'key_9', nodeId: 'n2', ttftMs: 12.25, durationMs: 40.5, status: 502, errorCode: 'upstream_error', failovers: 2, createdAt: new Date('2026-12-01T10:00:00.123Z') });
    const bare = record({ tenantId: null, keyId: null, nodeId: null, ttftMs: null, errorCode: null });
    expect(await usage.insertBatch([full, bare])).toBe(2);
    const { rows } = await db().pool.query<Record<string, unknown>>(
      `SELECT id, request_id, tenant_id, key_id, model, region, node_id, prompt_tokens, completion_tokens, ttft_ms, duration_ms, status,
              error_code, created_at, failovers FROM usage_records WHERE id = ANY($1) ORDER BY id`,
      [[full.id, bare.id]],
    );
    const asWritten = (r: UsageRecord): Record<string, unknown> => ({
      id: r.id, request_id: r.requestId, tenant_id: r.tenantId, key_id: r.keyId, model: r.model, region: r.region, node_id: r.nodeId,
      prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, ttft_ms: r.ttftMs, duration_ms: r.durationMs, status: r.status,
      error_code: r.errorCode, created_at: r.createdAt, failovers: r.failovers ?? 0,
    });
    expect(rows).toEqual([full, bare].sort((a, b) => a.id.localeCompare(b.id)).map(asWritten));
  });

  it('the pool never holds more connections than its size', async () => {
    await Promise.all(Array.from({ length: 200 }, () => db().pool.query('SELECT 1')));
    expect(db().pool.totalCount).toBeLessThanOrEqual(4);
  });
});

describe('embedded database', () => {
  it('keeps its data across restarts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-pglite-'));
    const first = await openDatabase({ dataDir: dir, poolSize: 2, log });
    await migrate(first);
    const { secret } = await new PgKeyStore(first).createKey({ tenant: 'p', name: 'k', limits: { requestsPerMinute: 0, tokensPerMinute: 0, maxConcurrent: 0 }, models: ['*'], priority: 'standard' });
    await first.close();
    const second = await openDatabase({ dataDir: dir, poolSize: 2, log });
    try {
      expect(await new PgKeyStore(second).findBySecret(secret)).toBeDefined();
    } finally {
      await second.close();
    }
  }, 60_000);
});

const redisKey = `${uniqueName('sytest_usage')}`;
const backends = redisBackends(redisKey);
beforeAll(() => backends.start(), 60_000);
afterAll(() => backends.stop());

const buffers: Array<[string, () => UsageBuffer]> = [
  ['memory', () => new MemoryUsageBuffer()],
  ...backends.each.map(([name, redis]): [string, () => UsageBuffer] => [`redis ${name}`, () => new RedisUsageBuffer({ redis: redis.connect(), key: redisKey })]),
];

describe.each(buffers)('UsageBuffer contract: %s', (_name, make) => {
  it('take peeks in order, ack removes exactly what was taken', async () => {
    const buf = make();
    const recs = [record(), record(), record()];
    for (const r of recs) buf.push(r);
    await new Promise((r) => setImmediate(r)); // Redis pushes go out on the next turn
    await expect.poll(() => buf.size()).toBe(3);
    const first = await buf.take(2);
    expect(first.map((r) => r.id)).toEqual([recs[0]?.id, recs[1]?.id]);
    expect(first[0]?.createdAt).toBeInstanceOf(Date);
    expect((await buf.take(2)).map((r) => r.id)).toEqual([recs[0]?.id, recs[1]?.id]); // not removed by take
    await buf.ack(2);
    expect((await buf.take(10)).map((r) => r.id)).toEqual([recs[2]?.id]);
    await buf.ack(1);
    expect(await buf.size()).toBe(0);
    await buf.close();
  });
});

describe('UsageFlusher', () => {
  it('a store failing several times: every record is written exactly once', async () => {
    const buffer = new MemoryUsageBuffer();
    const written = new Map<string, number>();
    let failures = 3;
    const store: UsageStore = {
      async insertBatch(records) {
        if (failures-- > 0) throw new Error('connection refused');
        for (const r of records) written.set(r.id, (written.get(r.id) ?? 0) + 1);
        return records.length;
      },
      async aggregate() {
        return [];
      },
    };
    const flusher = new UsageFlusher({ buffer, store, log, batchSize: 7 });
    const ids = Array.from({ length: 30 }, () => record()).map((r) => {
      buffer.push(r);
      return r.id;
    });
    for (let i = 0; i < 3; i++) await expect(flusher.flushOnce()).rejects.toThrow('connection refused');
    while ((await flusher.flushOnce()) > 0) {
      // drain
    }
    expect([...written.keys()].sort()).toEqual([...ids].sort());
    expect([...written.values()].every((n) => n === 1)).toBe(true);
    expect(await buffer.size()).toBe(0);
  });
});

describe('embedded database lock', () => {
  it('a second process-level open of the same data directory is refused while the first holds it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-pglite-'));
    const first = await openDatabase({ dataDir: dir, poolSize: 1, log });
    try {
      // Same process, so fake another live owner: the parent process of this test run.
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(dir, 'switchyard.lock'), String(process.ppid));
      await expect(openDatabase({ dataDir: dir, poolSize: 1, log })).rejects.toThrow(/in use by process/);
    } finally {
      await first.close();
    }
    // A lock left by a dead process is taken over.
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dir, 'switchyard.lock'), '999999');
    const again = await openDatabase({ dataDir: dir, poolSize: 1, log });
    await again.close();
  }, 60_000);
});
