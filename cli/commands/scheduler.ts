import { createLogger } from '../../core/logger.js';
import { AgentService } from '../../scheduler/agents/agent-service.js';
import { settingsFromArgv, waitForSignal } from '../run-command.js';
import { openServices } from '../services.js';

/**
 * `switchyard scheduler`: the gRPC endpoint node agents report to. Join tokens are checked
 * against the node registry; an operator's drain or resume reaches the node's agent within about
 * a second (the registry is polled for changes).
 * In progress (issue 4): live state is kept in this process only; gateways do not use it yet.
 */
export async function schedulerCommand(argv: readonly string[]): Promise<void> {
  const settings = settingsFromArgv(argv, process.env);
  const logger = createLogger({ name: 'switchyard', level: settings.logLevel });
  const log = logger.child({ module: 'scheduler' });
  const services = await openServices(settings, logger);
  const agents = new AgentService({
    auth: { verify: (id, token) => services.nodeStore.verifyJoinToken(id, token) },
    log,
    reportIntervalMs: settings.reportIntervalMs,
    initialCommands: async (id) => ((await services.nodeStore.get(id))?.draining === true ? [{ drain: {} }] : []),
  });
  // The drain state each node's agent was last told (or found at connect): commands go out on change only.
  const told = new Map<string, boolean>();
  let since = new Date(Date.now() - 1000);
  const poll = setInterval(() => {
    const at = new Date(Date.now() - 1000); // overlap: a change committed during the query is not missed
    services.nodeStore.changedSince(since).then(
      (changed) => {
        since = at;
        for (const node of changed) {
          const before = told.get(node.id) ?? false;
          told.set(node.id, node.draining);
          if (node.draining !== before) agents.send(node.id, node.draining ? { drain: {} } : { resume: {} });
        }
      },
      (err: unknown) => log.warn({ err: (err as Error).message }, 'registry poll failed'),
    );
  }, 1000);
  try {
    const port = await agents.start(settings.host, settings.schedulerPort);
    log.info({ url: `${settings.host}:${port}`, port }, 'scheduler listening');
    const signal = await waitForSignal();
    log.info({ signal }, 'shutting down');
  } finally {
    clearInterval(poll);
    await agents.stop();
    await services.close();
  }
}
