import { loadRegionsFile } from '../../core/config/load-regions.js';
import { createLogger } from '../../core/logger.js';
import { createRegistry } from '../../core/metrics.js';
import { packageVersion } from '../../core/version.js';
import { resolveRegion, startGateway } from '../../gateway/main.js';
import { DEFAULT_SIM_OPTIONS } from '../../sim/sim-options.js';
import { startSim, type SimServer } from '../../sim/sim-server.js';
import { startScheduler } from '../../scheduler/scheduler-service.js';
import { settingsFromArgv, waitForSignal } from '../run-command.js';
import { openServices, schedulerOptions, startUsageFlusher } from '../services.js';
import { startBackgroundWork, type BackgroundWork } from './worker.js';

/**
 * `switchyard start`: everything but the agent in one process (gateway, scheduler, usage writer,
 * simulated nodes), on the
 * embedded defaults when REDIS_URL and DATABASE_URL are unset. Nodes declared with
 * `engine: sim` are simulated in-process on their configured address, so a fresh checkout answers
 * OpenAI requests at once; nodes with a real engine are used as they are.
 */
export async function startCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  const topology = await loadRegionsFile(settings.configPath);
  resolveRegion(settings, topology); // a wrong region fails before any backend starts
  const logger = createLogger({ name: 'switchyard', level: settings.logLevel, format: settings.logFormat });
  const sims: SimServer[] = [];
  const services = await openServices(settings, logger);
  // One registry for the one process: the gateway's /metrics shows the scheduler's too.
  const registry = createRegistry('start', packageVersion());
  const flusher = startUsageFlusher(services, settings, logger);
  let stopScheduler: (() => Promise<void>) | undefined;
  let background: BackgroundWork | undefined;
  try {
    for (const node of topology.nodes) {
      if (node.sim === undefined) continue;
      const url = new URL(node.origin);
      const sim = await startSim({
        ...DEFAULT_SIM_OPTIONS,
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: Number(url.port || 80),
        models: node.models,
        tokensPerSecond: node.tokensPerSecond,
        maxSeqs: node.maxSequences,
        ttftMs: node.sim.ttftMs,
        seed: node.sim.seed,
      });
      sims.push(sim);
      logger.info({ nodeId: node.id, url: sim.url, models: node.models }, 'simulated node started');
    }
    const scheduler = await startScheduler(await schedulerOptions(settings, services, logger, registry));
    stopScheduler = () => scheduler.stop();
    const gateway = await startGateway({ settings, topology, logger, services, registry });
    // With Redis, background responses are BullMQ jobs: run a worker in this process as well
    // (its metrics stay off the gateway's registry, which already has these names).
    if (settings.redisUrl !== undefined) {
      background = await startBackgroundWork(settings, topology, services, createRegistry('worker', packageVersion()), logger);
    }
    process.stdout.write(`\nSwitchyard is up: ${gateway.url}/v1  (Ctrl-C stops it)\n\n`);
    const signal = await waitForSignal();
    logger.info({ signal }, 'shutting down');
    await background?.stop();
    await gateway.close();
  } finally {
    await Promise.all(sims.map((s) => s.close()));
    await stopScheduler?.();
    await flusher.stop();
    await services.close();
  }
}
