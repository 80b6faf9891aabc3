import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import type { Database } from './database.js';

/** migrations/ at the package root, from the sources (core/database) and the build (dist/core/database). */
export function migrationsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'migrations'))) return join(dir, 'migrations');
    dir = dirname(dir);
  }
  throw new Error('migrations directory not found');
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
