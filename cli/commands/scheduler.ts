import { createLogger } from '../../core/logger.js';
import { startScheduler } from '../../scheduler/scheduler-service.js';
import { loadTls } from '../tls.js';
import { settingsFromArgv, waitForSignal } from '../run-command.js';
import { openServices } from '../services.js';

/** `switchyard scheduler`: the gRPC endpoint node agents report to (see scheduler/scheduler-service.ts). */
export async function schedulerCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  const logger = createLogger({ name: 'switchyard', level: settings.logLevel });
  const services = await openServices(settings, logger);
  try {
    const scheduler = await startScheduler({
      nodes: services.nodeStore,
      db: services.db,
      live: services.liveState,
      log: logger.child({ module: 'scheduler' }),
      host: settings.host,
      port: settings.schedulerPort,
      reportIntervalMs: settings.reportIntervalMs,
      tls: await loadTls(settings),
    });
    const signal = await waitForSignal();
    logger.info({ signal }, 'shutting down');
    await scheduler.stop();
  } finally {
    await services.close();
  }
}
