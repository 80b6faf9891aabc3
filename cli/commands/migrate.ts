import { join } from 'node:path';
import { openDatabase } from '../../core/database/database.js';
import { migrate } from '../../core/database/migrate.js';
import { createLogger } from '../../core/logger.js';
import { settingsFromArgv } from '../run-command.js';

/** `switchyard migrate`: applies pending migrations (processes also do so at start-up). */
export async function migrateCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  const logger = createLogger({ name: 'switchyard', level: settings.logLevel, format: settings.logFormat });
  const db = await openDatabase({
    ...(settings.databaseUrl === undefined ? {} : { url: settings.databaseUrl }),
    dataDir: join(settings.dataDir, 'pglite'),
    poolSize: 1,
    schema: settings.databaseSchema,
    log: logger,
  });
  try {
    const applied = await migrate(db, logger);
    process.stdout.write(applied.length === 0 ? 'migrations: up to date\n' : `migrations applied: ${applied.join(', ')}\n`);
  } finally {
    await db.close();
  }
}
