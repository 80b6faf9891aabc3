import { join } from 'node:path';
import { runner } from 'node-pg-migrate';
import { packageRoot } from '../package-root.js';
import type { Database } from './database.js';

/** migrations/ at the package root. */
export function migrationsDir(): string {
  return join(packageRoot(), 'migrations');
}

/**
 * Applies pending migrations (node-pg-migrate, plain SQL files). Idempotent; processes starting
 * together wait on node-pg-migrate's advisory lock instead of racing.
 */
export async function migrate(db: Database, log?: { info(obj: object, msg: string): void }): Promise<string[]> {
  const client = await db.pool.connect();
  try {
    const applied = await runner({
      dbClient: client,
      dir: migrationsDir(),
      direction: 'up',
      migrationsTable: 'pgmigrations',
      schema: db.schema,
      createSchema: true,
      checkOrder: true,
      advisoryLockMode: 'wait',
      log: () => undefined,
    });
    const names = applied.map((m) => m.name);
    if (names.length > 0) log?.info({ applied: names }, 'migrations applied');
    return names;
  } finally {
    client.release();
  }
}
