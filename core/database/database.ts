import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
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
 * same `pg` code runs on it, through a pool of one client (see below).
 */
export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  const schema = opts.schema ?? 'public';
  if (!SCHEMA.test(schema)) throw new Error(`invalid schema name "${schema}"`);
  let embedded: { stop(): Promise<void> } | undefined;
  let pool: pg.Pool;
  if (opts.url !== undefined) {
    pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.poolSize,
      idleTimeoutMillis: 30_000,
      connectionTimeoutMillis: 5_000,
      // The search path is set per connection, so every query sees the configured schema.
      options: `-c search_path=${schema}`,
    });
  } else {
    const started = await startEmbedded(opts.dataDir);
    embedded = started;
    // One client only: PGlite has a single session, and its socket server interleaves the
    // protocol messages of concurrent connections when a query spans several TCP chunks (seen:
    // "bind message supplies 2 parameters…", once a wrong row). Startup options are ignored by
    // it, so the search path is set on the connection itself, before the pool hands it out
    // (pg-pool awaits `onConnect`; its type says void). A 'connect' listener would race the
    // caller's first query on the same client.
    pool = new pg.Pool({
      host: '127.0.0.1',
      port: started.port,
      user: 'postgres',
      database: 'postgres',
      max: 1,
      idleTimeoutMillis: 0,
      onConnect: async (client) => {
        await client.query(`SET search_path TO "${schema}", public`);
      },
    });
    opts.log.info({ dataDir: opts.dataDir }, 'embedded Postgres (PGlite) started');
  }
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

async function startEmbedded(dataDir: string): Promise<{ port: number; stop(): Promise<void> }> {
  await mkdir(dataDir, { recursive: true });
  const releaseLock = await lockDataDir(dataDir);
  // Loaded on demand: processes with DATABASE_URL never pay for the WASM module.
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const db = await PGlite.create(dataDir);
  // Two: a reconnect may overlap the close of the previous connection.
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 2 });
  await server.start();
  const port = Number(server.getServerConn().split(':').pop());
  return {
    port,
    async stop() {
      await server.stop();
      await db.close();
      await releaseLock();
    },
  };
}

/**
 * PGlite has no lock of its own: two processes on one data directory would corrupt it. A lock
 * file holding the owner's pid refuses a second opener; one left by a dead process is taken over.
 */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, 'switchyard.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new Error(`the embedded database in ${dataDir} is in use by process ${owner}; stop it, or set SWITCHYARD_DATA_DIR or DATABASE_URL`);
      }
      await rm(path, { force: true }); // stale: its owner is gone
    }
  }
  throw new Error(`cannot lock ${dataDir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
