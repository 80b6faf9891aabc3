import type { RedisClient } from '../redis-connection.js';
import type { Database } from '../database/database.js';

export type ResponseStatus = 'queued' | 'in_progress' | 'completed' | 'failed' | 'cancelled' | 'incomplete';

export const TERMINAL_STATUSES: readonly ResponseStatus[] = ['completed', 'failed', 'cancelled', 'incomplete'];

/** One chat message of a conversation, as the engines take it. */
export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

/** A Responses API response as Switchyard keeps it (the API object is built from this). */
export interface StoredResponse {
  readonly id: string;
  /** The first response of the chain: the conversation's id, and its affinity key. */
  readonly conversationId: string;
  readonly createdAt: number;
  readonly status: ResponseStatus;
  readonly model: string;
  readonly instructions: string | null;
  /** This turn's new input (earlier turns are reached through `previousResponseId`). */
  readonly input: readonly ChatMessage[];
  readonly previousResponseId: string | null;
  readonly outputText: string | null;
  /** Id of the output message item, fixed at creation so polling sees a stable id. */
  readonly messageId: string;
  readonly usage: { readonly input_tokens: number; readonly output_tokens: number } | null;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly incompleteReason: string | null;
  readonly background: boolean;
  /**
   * A background response created with `stream: true`: its events are logged while it runs, so
   * clients can stream it and resume (`GET /v1/responses/{id}?stream=true`). (Absent from older records.)
   */
  readonly streamed?: boolean | undefined;
  /** false: kept only while the request runs, never written anywhere. */
  readonly store: boolean;
  readonly metadata: Readonly<Record<string, string>>;
  /**
   * Placement key shared by every turn: the request's `prompt_cache_key`, else the one of the turn
   * it continues; without one, turns are placed by their conversation. (Absent from older records.)
   */
  readonly promptCacheKey?: string | undefined;
  /** Sampling and limits, forwarded to the engine as chat-completions fields. */
  readonly params: Readonly<Record<string, unknown>>;
  readonly tenant: string;
  readonly priority: 'interactive' | 'standard' | 'batch';
  readonly nodeId: string | null;
  /**
   * A background run's text so far (with its token count), saved as it runs: a worker that takes
   * the job over continues from it. Not part of the API object.
   */
  readonly partial?: { readonly text: string; readonly tokens: number } | undefined;
}

/**
 * Responses and their conversations: hot in Redis (or this process's memory without Redis) while
 * active, moved to Postgres when idle (`archiveIdle`, run by node-cron in the worker) and read back
 * from there transparently. Status changes are compare-and-set, so a response ends exactly once
 * even when a job runs twice (a stalled worker) or a cancel races a completion.
 */
export interface ResponseStore {
  put(r: StoredResponse): Promise<void>;
  get(id: string): Promise<StoredResponse | undefined>;
  /**
   * Applies `patch` only while the status is one of `from`; returns the new record, or undefined
   * when the response is gone or in another status.
   */
  transition(id: string, from: readonly ResponseStatus[], patch: Partial<StoredResponse>): Promise<StoredResponse | undefined>;
  delete(id: string): Promise<boolean>;
  /** Moves finished responses untouched for `idleMs` to Postgres; returns how many moved. */
  archiveIdle(idleMs: number): Promise<number>;
  close(): Promise<void>;
}

/** The Postgres side: the archive every hot tier falls back to. */
export class PgResponseArchive {
  constructor(private readonly db: Database) {}

  async save(records: readonly StoredResponse[]): Promise<void> {
    if (records.length === 0) return;
    await this.db.pool.query(
      `INSERT INTO responses (id, conversation_id, status, data, created_at, archived_at)
       SELECT r.id, r.conversation_id, r.status, r.data, to_timestamp(r.created_at), now()
       FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::double precision[]) AS r(id, conversation_id, status, data, created_at)
       ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, data = EXCLUDED.data, archived_at = now()`,
      [
        records.map((r) => r.id),
        records.map((r) => r.conversationId),
        records.map((r) => r.status),
        records.map((r) => JSON.stringify(r)),
        records.map((r) => r.createdAt),
      ],
    );
  }

  async load(id: string): Promise<StoredResponse | undefined> {
    const { rows } = await this.db.pool.query<{ data: StoredResponse }>('SELECT data FROM responses WHERE id = $1', [id]);
    return rows[0]?.data;
  }

  async remove(id: string): Promise<boolean> {
    const res = await this.db.pool.query('DELETE FROM responses WHERE id = $1', [id]);
    return (res.rowCount ?? 0) > 0;
  }
}

function isTerminal(status: ResponseStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

/** Without Redis: one process's memory, archived to (the embedded) Postgres when idle. */
export class MemoryResponseStore implements ResponseStore {
  private readonly hot = new Map<string, { record: StoredResponse; touchedAt: number }>();

  constructor(
    private readonly archive: PgResponseArchive,
    private readonly now: () => number = Date.now,
  ) {}

  put(r: StoredResponse): Promise<void> {
    this.hot.set(r.id, { record: r, touchedAt: this.now() });
    return Promise.resolve();
  }

  async get(id: string): Promise<StoredResponse | undefined> {
    const entry = this.hot.get(id);
    if (entry !== undefined) {
      entry.touchedAt = this.now();
      return entry.record;
    }
    const archived = await this.archive.load(id);
    if (archived !== undefined) await this.put(archived);
    return archived;
  }

  async transition(id: string, from: readonly ResponseStatus[], patch: Partial<StoredResponse>): Promise<StoredResponse | undefined> {
    const current = this.hot.get(id)?.record ?? (await this.get(id));
    if (current === undefined || !from.includes(current.status)) return undefined;
    const next = { ...current, ...patch, id: current.id };
    await this.put(next);
    return next;
  }

  async delete(id: string): Promise<boolean> {
    const hot = this.hot.delete(id);
    const archived = await this.archive.remove(id);
    return hot || archived;
  }

  async archiveIdle(idleMs: number): Promise<number> {
    const cutoff = this.now() - idleMs;
    const idle = [...this.hot.values()].filter((e) => e.touchedAt <= cutoff && isTerminal(e.record.status)).map((e) => e.record);
    await this.archive.save(idle);
    for (const r of idle) if (this.hot.get(r.id)?.record === r) this.hot.delete(r.id);
    return idle.length;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/*
 * Redis layout: hash {prefix}resp:<id> with fields status, version, data (the JSON record), and a
 * sorted set {prefix}resp:touched scoring ids by last use (for the idle sweep). The two live in
 * different Redis Cluster slots, so every script touches one key: the index entry is written
 * before the hash (an entry without its hash is dropped by the sweep) and removed only while it
 * is still idle (a response read again meanwhile keeps its fresh entry).
 * SET_IF_VERSION: KEYS[1] hash; ARGV: expected version ('' = must not exist), status, data,
 * ttl ms. Returns 1 when written.
 */
const SET_IF_VERSION = `
local v = redis.call('HGET', KEYS[1], 'version')
if ARGV[1] == '' then
  if v then return 0 end
elseif v ~= ARGV[1] then
  return 0
end
local nv = (tonumber(v) or 0) + 1
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[3], 'version', nv)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
`;

/** KEYS[1] hash; ARGV[1] version. Deletes the hash only if it still has the version the archiver copied. */
const DELETE_IF_VERSION = `
if redis.call('HGET', KEYS[1], 'version') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`;

/** KEYS[1] touched index; ARGV[1] member, ARGV[2] cutoff ms. Removes the entry only if still idle. */
const UNTOUCH_IF_IDLE = `
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`;

type ResponseRedis = RedisClient & {
  switchyardResponseSet(k1: string, ...args: (string | number)[]): Promise<number>;
  switchyardResponseDeleteIf(k1: string, version: string): Promise<number>;
  switchyardResponseUntouch(k1: string, member: string, cutoff: number): Promise<number>;
};

/** Shared by every gateway and worker: hot in Redis with a safety TTL, archived to Postgres. */
export class RedisResponseStore implements ResponseStore {
  private readonly redis: ResponseRedis;
  private readonly touched: string;

  constructor(
    redis: RedisClient,
    private readonly prefix: string,
    private readonly archive: PgResponseArchive,
    /** Longest a response stays in Redis without the sweep (a safety net, well above the idle time). */
    private readonly hotTtlMs = 7 * 24 * 3600 * 1000,
  ) {
    this.redis = redis as ResponseRedis;
    this.touched = `${prefix}resp:touched`;
    if (typeof (this.redis as Partial<ResponseRedis>).switchyardResponseSet !== 'function') {
      this.redis.defineCommand('switchyardResponseSet', { numberOfKeys: 1, lua: SET_IF_VERSION });
      this.redis.defineCommand('switchyardResponseDeleteIf', { numberOfKeys: 1, lua: DELETE_IF_VERSION });
      this.redis.defineCommand('switchyardResponseUntouch', { numberOfKeys: 1, lua: UNTOUCH_IF_IDLE });
    }
  }

  private key(id: string): string {
    return `${this.prefix}resp:${id}`;
  }

  async put(r: StoredResponse): Promise<void> {
    const key = this.key(r.id);
    await this.redis.zadd(this.touched, Date.now(), key);
    await this.redis.multi().hset(key, 'status', r.status, 'data', JSON.stringify(r)).hincrby(key, 'version', 1).pexpire(key, this.hotTtlMs).exec();
  }

  private async read(id: string): Promise<{ record: StoredResponse; version: string } | undefined> {
    const [data, version] = await this.redis.hmget(this.key(id), 'data', 'version');
    if (data === null || data === undefined || version === null || version === undefined) return undefined;
    return { record: JSON.parse(data) as StoredResponse, version };
  }

  async get(id: string): Promise<StoredResponse | undefined> {
    const hot = await this.read(id);
    if (hot !== undefined) {
      await this.redis.zadd(this.touched, Date.now(), this.key(id));
      return hot.record;
    }
    const archived = await this.archive.load(id);
    if (archived !== undefined) {
      // Back in Redis while the conversation is active again; the sweep archives it again later.
      await this.redis.zadd(this.touched, Date.now(), this.key(id));
      await this.redis.switchyardResponseSet(this.key(id), '', archived.status, JSON.stringify(archived), this.hotTtlMs);
    }
    return archived;
  }

  async transition(id: string, from: readonly ResponseStatus[], patch: Partial<StoredResponse>): Promise<StoredResponse | undefined> {
    for (let attempt = 0; attempt < 20; attempt++) {
      let current = await this.read(id);
      if (current === undefined) {
        if ((await this.get(id)) === undefined) return undefined;
        current = await this.read(id);
        if (current === undefined) continue;
      }
      if (!from.includes(current.record.status)) return undefined;
      const next: StoredResponse = { ...current.record, ...patch, id: current.record.id };
      await this.redis.zadd(this.touched, Date.now(), this.key(id));
      const ok = await this.redis.switchyardResponseSet(this.key(id), current.version, next.status, JSON.stringify(next), this.hotTtlMs);
      if (ok === 1) return next;
    }
    throw new Error(`response ${id}: too much contention on its status`);
  }

  async delete(id: string): Promise<boolean> {
    const hot = await this.redis.del(this.key(id));
    await this.redis.zrem(this.touched, this.key(id));
    const archived = await this.archive.remove(id);
    return hot > 0 || archived;
  }

  async archiveIdle(idleMs: number): Promise<number> {
    const cutoff = Date.now() - idleMs;
    const keys = await this.redis.zrangebyscore(this.touched, '-inf', cutoff, 'LIMIT', 0, 500);
    const batch: Array<{ key: string; record: StoredResponse; version: string }> = [];
    for (const key of keys) {
      const [data, version] = await this.redis.hmget(key, 'data', 'version');
      if (data === null || data === undefined || version === null || version === undefined) {
        await this.redis.switchyardResponseUntouch(this.touched, key, cutoff);
        continue;
      }
      const record = JSON.parse(data) as StoredResponse;
      if (isTerminal(record.status)) batch.push({ key, record, version });
    }
    await this.archive.save(batch.map((b) => b.record));
    let moved = 0;
    for (const b of batch) {
      if ((await this.redis.switchyardResponseDeleteIf(b.key, b.version)) === 0) continue;
      moved++;
      await this.redis.switchyardResponseUntouch(this.touched, b.key, cutoff);
    }
    return moved;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
