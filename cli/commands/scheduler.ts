import { createServer } from 'node:http';
import { createLogger } from '../../core/logger.js';
import { createRegistry } from '../../core/metrics.js';
import { packageVersion } from '../../core/version.js';
import { startScheduler } from '../../scheduler/scheduler-service.js';
import { settingsFromArgv, waitForSignal } from '../run-command.js';
import { openServices, schedulerOptions } from '../services.js';

/** `switchyard scheduler`: the gRPC endpoint node agents report to (see scheduler/scheduler-service.ts). */
export async function schedulerCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  const logger = createLogger({ name: 'switchyard', level: settings.logLevel });
  const services = await openServices(settings, logger);
  const registry = createRegistry('scheduler', packageVersion());
  try {
    const scheduler = await startScheduler(await schedulerOptions(settings, services, logger, registry));
    // /metrics and /healthz on SWITCHYARD_PORT, for Prometheus and the orchestrator.
    const http = createServer((req, res) => {
      if (req.url === '/healthz') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      if (req.url !== '/metrics') return void res.writeHead(404).end();
      registry.metrics().then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text), () => res.writeHead(500).end());
    });
    await new Promise<void>((resolve) => http.listen(settings.port, settings.host, resolve));
    const signal = await waitForSignal();
    logger.info({ signal }, 'shutting down');
    await new Promise((r) => http.close(r));
    await scheduler.stop();
  } finally {
    await services.close();
  }
}
