import { mkdir } from 'node:fs/promises';
import pg from 'pg';

export interface Database {
  readonly pool: pg.Pool;
  readonly kind: 'postgres' | 'embedded';
  readonly schema: string;
  close(): Promise<void>;
}

interface Log {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface DatabaseOptions {
  /** DATABASE_URL; unset: the embedded PGlite in `dataDir`. */
  readonly url?: string;
  readonly dataDir: string;
  /** Most connections this process opens. */
  readonly poolSize: number;
  /** Schema of the tables (created if missing); tests use one per file. */
  readonly schema?: string;
  readonly log: Log;
}

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * One bounded pg.Pool per process. With no DATABASE_URL, PGlite (Postgres compiled to WASM) is
 * started on `dataDir` and served over the Postgres wire protocol on a loopback port, so the very
 * same `pg` code runs on it. PGlite executes one query at a time; its socket server queues the
 * connections' queries (keeping a transaction's queries together), so several pool clients work.
 */
export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  const schema = opts.schema ?? 'public';
  if (!SCHEMA.test(schema)) throw new Error(`invalid schema name "${schema}"`);
  let embedded: { stop(): Promise<void> } | undefined;
  let connection: pg.PoolConfig;
  if (opts.url !== undefined) {
    connection = { connectionString: opts.url };
  } else {
    const started = await startEmbedded(opts.dataDir, opts.poolSize);
    embedded = started;
    connection = { host: '127.0.0.1', port: started.port, user: 'postgres', database: 'postgres' };
    opts.log.info({ dataDir: opts.dataDir }, 'embedded Postgres (PGlite) started');
  }
  const pool = new pg.Pool({
    ...connection,
    max: opts.poolSize,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 5_000,
    // The search path is set per connection, so every query sees the configured schema.
    options: `-c search_path=${schema}`,
  });
  // An idle client losing its server (Postgres restarted) emits here; unhandled, it would crash.
  pool.on('error', (err) => opts.log.warn({ err: err.message }, 'idle Postgres connection lost'));
  try {
    await pool.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
  } catch (err) {
    await pool.end().catch(() => undefined);
    await embedded?.stop();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    pool,
    kind: embedded === undefined ? 'postgres' : 'embedded',
    schema,
    close: () =>
      (closing ??= (async () => {
        await pool.end().catch(() => undefined);
        await embedded?.stop();
      })()),
  };
}

async function startEmbedded(dataDir: string, connections: number): Promise<{ port: number; stop(): Promise<void> }> {
  await mkdir(dataDir, { recursive: true });
  // Loaded on demand: processes with DATABASE_URL never pay for the WASM module.
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const db = await PGlite.create(dataDir);
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: connections + 2 });
  await server.start();
  const port = Number(server.getServerConn().split(':').pop());
  return {
    port,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}
