import { loadRegionsFile } from '../../core/config/load-regions.js';
import { createLogger } from '../../core/logger.js';
import { redisConfigured } from '../../core/redis-connection.js';
import { createRegistry } from '../../core/metrics.js';
import { packageVersion } from '../../core/version.js';
import { resolveRegion, startGateway } from '../../gateway/main.js';
import { DEFAULT_SIM_OPTIONS } from '../../sim/sim-options.js';
import { startSim, type SimServer } from '../../sim/sim-server.js';
import { startScheduler, type LocalAgent } from '../../scheduler/scheduler-service.js';
import { startAgent, type AgentHandle } from '../../gpu-agent/agent.js';
import { randomBytes } from 'node:crypto';
import { settingsFromArgv, waitForSignal } from '../run-command.js';
import { openServices, schedulerOptions, startUsageFlusher } from '../services.js';
import { startBackgroundWork, type BackgroundWork } from './worker.js';

/**
 * `switchyard start`: the whole system in one process (gateway, scheduler, usage writer,
 * background responses, simulated nodes with their agents), on the embedded defaults when
 * REDIS_URL and DATABASE_URL are unset. Nodes declared with `engine: sim` are simulated
 * in-process on their configured address, each with an agent that reports its engine and
 * simulated GPUs (the sim's DCGM page) to the scheduler over gRPC, as on a real GPU node; nodes
 * with a real engine are used as they are. Without Redis, background responses run in this
 * process (not durable); with it, on BullMQ as `switchyard worker` runs them.
 */
export async function startCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  // Listening from the start: a SIGTERM while the sims' agents are still starting (after the
  // gateway already said it listens) must stop the process cleanly, not kill it.
  const signalled = waitForSignal();
  const topology = await loadRegionsFile(settings.configPath);
  resolveRegion(settings, topology); // a wrong region fails before any backend starts
  const logger = createLogger({ name: 'switchyard', level: settings.logLevel, format: settings.logFormat });
  const sims: { nodeId: string; server: SimServer }[] = [];
  const services = await openServices(settings, logger);
  // One registry for the one process: the gateway's /metrics shows the scheduler's too.
  const registry = createRegistry('start', packageVersion());
  const flusher = startUsageFlusher(services, settings, logger);
  let stopScheduler: (() => Promise<void>) | undefined;
  let background: BackgroundWork | undefined;
  const agents: AgentHandle[] = [];
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
      sims.push({ nodeId: node.id, server: sim });
      logger.info({ nodeId: node.id, url: sim.url, models: node.models }, 'simulated node started');
    }
    // The sims' agents join with tokens made now: their nodes are declared in regions.yaml, not registered.
    const localAgents = new Map<string, LocalAgent>(
      topology.nodes
        .filter((n) => n.sim !== undefined)
        .map((n) => [n.id, { joinToken: `sy-join-${randomBytes(24).toString('base64url')}`, tokensPerSecond: n.tokensPerSecond, maxSequences: n.maxSequences }]),
    );
    const scheduler = await startScheduler({ ...(await schedulerOptions(settings, services, logger, registry)), localAgents });
    stopScheduler = () => scheduler.stop();
    const gateway = await startGateway({ settings, topology, logger, services, registry, backgroundInProcess: true });
    const schedulerHost = ['0.0.0.0', '::', ''].includes(settings.host) ? '127.0.0.1' : settings.host;
    for (const sim of sims) {
      const local = localAgents.get(sim.nodeId) as LocalAgent;
      agents.push(
        await startAgent({
          schedulerTarget: `${schedulerHost.includes(':') ? `[${schedulerHost}]` : schedulerHost}:${scheduler.port}`,
          nodeId: sim.nodeId,
          joinToken: local.joinToken,
          engineUrl: sim.server.url,
          dcgmUrl: `${sim.server.url}/dcgm/metrics`,
          host: schedulerHost,
          metricsPort: 0,
          log: logger, // the agent names itself (module, nodeId) on its lines
          version: packageVersion(),
          tlsCaFile: settings.grpcTlsCert,
        }),
      );
    }
    // With Redis, background responses are BullMQ jobs: run a worker in this process as well
    // (its metrics stay off the gateway's registry, which already has these names).
    if (redisConfigured(settings)) {
      background = await startBackgroundWork(settings, topology, services, createRegistry('worker', packageVersion()), logger);
    }
    process.stdout.write(`\nSwitchyard is up: ${gateway.url}/v1  (Ctrl-C stops it)\n\n`);
    const signal = await signalled;
    logger.info({ signal }, 'shutting down');
    await background?.stop();
    await gateway.close();
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all(sims.map((s) => s.server.close()));
    await stopScheduler?.();
    await flusher.stop();
    await services.close();
  }
}
