import { loadRegionsFile } from '../../core/config/load-regions.js';
import { createLogger } from '../../core/logger.js';
import { startGateway } from '../../gateway/main.js';
import { settingsFromArgv, waitForSignal } from '../run-command.js';

/** `switchyard gateway`: the OpenAI API in front of the nodes of regions.yaml. */
export async function gatewayCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  const topology = await loadRegionsFile(settings.configPath);
  const logger = createLogger({ name: 'switchyard', level: settings.logLevel });
  const gateway = await startGateway({ settings, topology, logger });
  const signal = await waitForSignal();
  logger.info({ signal }, 'shutting down');
  await gateway.close();
}
