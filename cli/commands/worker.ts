import { createLogger } from '../../core/logger.js';
import { settingsFromArgv, UsageError, waitForSignal } from '../run-command.js';
import { openServices, startUsageFlusher } from '../services.js';

/**
 * `switchyard worker`: background consumers. Today: drains the usage buffer in Redis into Postgres
 * in batches. Without Redis there is nothing shared to drain: each gateway writes its own usage.
 */
export async function workerCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  if (settings.redisUrl === undefined) {
    throw new UsageError('worker needs REDIS_URL: its queues live in Redis (without Redis, `switchyard start` or each gateway writes usage itself)');
  }
  const logger = createLogger({ name: 'switchyard', level: settings.logLevel });
  const services = await openServices(settings, logger);
  const flusher = startUsageFlusher(services, settings, logger);
  logger.info({ url: 'worker', database: services.db.kind }, 'worker running');
  try {
    const signal = await waitForSignal();
    logger.info({ signal }, 'shutting down');
  } finally {
    await flusher.stop();
    await services.close();
  }
}
