import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../core/database/database.js';
import { migrate } from '../../core/database/migrate.js';
import { MemoryResponseStore, PgResponseArchive, RedisResponseStore, type ResponseStore, type StoredResponse } from '../../core/storage/response-store.js';
import { redisBackends } from '../helpers/redis-topologies.js';
import { dropSchema, PG_URL, uniqueName } from '../helpers/services.js';

/** One contract, both hot tiers (memory, Redis: server, Cluster, Sentinel), each archiving to the machine's Postgres. */
const log = { info: () => undefined, warn: () => undefined };
const schema = uniqueName('sy_responses');
const prefix = `${uniqueName('sytest_resp')}:`;
let db: Database;
const backends = redisBackends(prefix);

beforeAll(async () => {
  await backends.start();
  db = await openDatabase({ url: PG_URL, dataDir: mkdtempSync(join(tmpdir(), 'switchyard-resp-')), poolSize: 2, schema, log });
  await migrate(db);
}, 60_000);

afterAll(async () => {
  await db.close();
  await dropSchema(schema);
  await backends.stop();
});

let n = 0;
const response = (over: Partial<StoredResponse> = {}): StoredResponse => {
  const id = `resp_${schema}_${++n}`;
  return {
    id, conversationId: id, createdAt: 1_800_000_000, status: 'queued', model: 'm', instructions: null, input: [{ role: 'user', content: 'hi' }],
    previousResponseId: null, outputText: null, messageId: `msg_${n}`, usage: null, error: null, incompleteReason: null, background: true,
    store: true, metadata: { k: 'v' }, params: {}, tenant: 't', priority: 'batch', nodeId: null, ...over,
  };
};

const stores: Array<[string, () => ResponseStore]> = [
  ['memory', () => new MemoryResponseStore(new PgResponseArchive(db))],
  ...backends.each.map(([name, redis]): [string, () => ResponseStore] => [`redis ${name}`, () => new RedisResponseStore(redis.connect(), prefix, new PgResponseArchive(db))]),
];

describe.each(stores)('ResponseStore contract: %s', (_name, make) => {
  it('put and get; transitions apply only from the expected statuses (exactly one result)', async () => {
    const store = make();
    const r = response();
    await store.put(r);
    expect(await store.get(r.id)).toEqual(r);
    expect((await store.transition(r.id, ['queued'], { status: 'in_progress' }))?.status).toBe('in_progress');
    // A second run of the job may restart it, but only one completion wins.
    expect((await store.transition(r.id, ['queued', 'in_progress'], { status: 'in_progress' }))?.status).toBe('in_progress');
    const results = await Promise.all([
      store.transition(r.id, ['in_progress'], { status: 'completed', outputText: 'first' }),
      store.transition(r.id, ['in_progress'], { status: 'completed', outputText: 'second' }),
      store.transition(r.id, ['queued', 'in_progress'], { status: 'cancelled' }),
    ]);
    expect(results.filter((x) => x !== undefined)).toHaveLength(1);
    const final = await store.get(r.id);
    expect(['completed', 'cancelled']).toContain(final?.status);
    expect(await store.transition(r.id, ['in_progress'], { status: 'failed' })).toBeUndefined();
    expect(await store.transition('resp_missing', ['queued'], { status: 'failed' })).toBeUndefined();
  });

  it('archives finished, idle responses to Postgres and reads them back transparently; active ones stay hot', async () => {
    const store = make();
    const done = response({ status: 'completed', outputText: 'kept' });
    const running = response({ status: 'in_progress' });
    await store.put(done);
    await store.put(running);
    await new Promise((r) => setTimeout(r, 30));
    expect(await store.archiveIdle(10)).toBeGreaterThanOrEqual(1);
    const rows = await db.pool.query<{ id: string; status: string }>('SELECT id, status FROM responses WHERE id = ANY($1)', [[done.id, running.id]]);
    expect(rows.rows).toEqual([{ id: done.id, status: 'completed' }]);
    expect(await store.get(done.id)).toEqual(done);
    expect((await store.transition(running.id, ['in_progress'], { status: 'completed' }))?.status).toBe('completed');
  });

  it('delete removes both tiers', async () => {
    const store = make();
    const r = response({ status: 'completed' });
    await store.put(r);
    await new Promise((res) => setTimeout(res, 20));
    await store.archiveIdle(5);
    await store.put(r);
    expect(await store.delete(r.id)).toBe(true);
    expect(await store.get(r.id)).toBeUndefined();
    expect(await store.delete(r.id)).toBe(false);
  });
});
