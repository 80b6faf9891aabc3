import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';

export const PG_URL = process.env['TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/** A fresh name for a test file's own Postgres schema and Redis key prefix. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/** Drops a test file's schema (and everything in it). */
export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

export async function query<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/**
 * Samples, back to back until stopped, how many Postgres connections the processes started with
 * `application_name` hold (pg_stat_activity); `stop` resolves to the peak seen.
 */
export function samplePgConnections(applicationName: string): { stop(): Promise<number> } {
  let peak = 0;
  let sampling = true;
  const done = (async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      while (sampling) {
        const r = await client.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1', [applicationName]);
        peak = Math.max(peak, Number(r.rows[0]?.n));
      }
    } finally {
      await client.end();
    }
  })();
  return {
    async stop() {
      sampling = false;
      await done;
      return peak;
    },
  };
}

/**
 * Redis connections for one test file: `connect` opens one (all closed by `cleanup`), and
 * `cleanup` also deletes every key under the file's `prefix`.
 */
export function testRedis(prefix: string): { connect(): Redis; cleanup(): Promise<void> } {
  const connections: Redis[] = [];
  const connect = (): Redis => {
    const r = new Redis(REDIS_URL);
    connections.push(r);
    return r;
  };
  return {
    connect,
    async cleanup() {
      const r = connect();
      const keys = await r.keys(`${prefix}*`);
      if (keys.length > 0) await r.del(...keys);
      await Promise.all(connections.map((c) => c.quit()));
    },
  };
}
