import { loadRegionsFile } from '../../core/config/load-regions.js';
import { createLogger } from '../../core/logger.js';
import { resolveRegion, startGateway } from '../../gateway/main.js';
import { settingsFromArgv, waitForSignal } from '../run-command.js';
import { openServices, startUsageFlusher } from '../services.js';

/**
 * `switchyard gateway`: the OpenAI API in front of the nodes of regions.yaml. With Redis, usage
 * records go to Redis for `switchyard worker` to write; without it this process writes its own.
 */
export async function gatewayCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  const topology = await loadRegionsFile(settings.configPath);
  resolveRegion(settings, topology); // a wrong region fails before any backend starts
  const logger = createLogger({ name: 'switchyard', level: settings.logLevel, format: settings.logFormat });
  const services = await openServices(settings, logger);
  const flusher = services.localUsageBuffer ? startUsageFlusher(services, settings, logger) : undefined;
  try {
    const gateway = await startGateway({ settings, topology, logger, services });
    const signal = await waitForSignal();
    logger.info({ signal }, 'shutting down');
    await gateway.close();
  } finally {
    await flusher?.stop();
    await services.close();
  }
}
