import { createLogger } from '../../core/logger.js';
import { createRegistry } from '../../core/metrics.js';
import { packageVersion } from '../../core/version.js';
import { startScheduler } from '../../scheduler/scheduler-service.js';
import { settingsFromArgv, waitForSignal } from '../run-command.js';
import { serveMetrics } from '../metrics-server.js';
import { openServices, schedulerOptions } from '../services.js';

/** `switchyard scheduler`: the gRPC endpoint node agents report to (see scheduler/scheduler-service.ts). */
export async function schedulerCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  const logger = createLogger({ name: 'switchyard', level: settings.logLevel, format: settings.logFormat });
  const services = await openServices(settings, logger);
  const registry = createRegistry('scheduler', packageVersion());
  try {
    const scheduler = await startScheduler(await schedulerOptions(settings, services, logger, registry));
    services.registerMetrics(registry);
    // /metrics and /healthz on SWITCHYARD_PORT, for Prometheus and the orchestrator.
    const http = await serveMetrics(registry, settings.host, settings.port);
    logger.info({ url: http.url }, 'scheduler metrics listening');
    const signal = await waitForSignal();
    logger.info({ signal }, 'shutting down');
    await http.close();
    await scheduler.stop();
  } finally {
    await services.close();
  }
}
