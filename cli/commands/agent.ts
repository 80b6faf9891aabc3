import { parseArgs } from 'node:util';
import { createLogger, isLogFormat, LOG_FORMATS } from '../../core/logger.js';
import { packageVersion } from '../../core/version.js';
import { startAgent } from '../../gpu-agent/agent.js';
import { UsageError, waitForSignal } from '../run-command.js';

/** Also printed by `switchyard agent --help`. */
export const HELP = `usage: switchyard agent --scheduler HOST:PORT --node-id ID --join-token TOKEN --engine-url URL
         [--metrics-port 9400] [--host 127.0.0.1] [--dcgm-url http://…/metrics] [--tls-ca ca.pem]
         [--log-level info] [--log-format auto|json|pretty] [--pod NAME [--namespace NS]]
  environment: SWITCHYARD_SCHEDULER_URL, SWITCHYARD_NODE_ID, SWITCHYARD_JOIN_TOKEN, SWITCHYARD_ENGINE_URL,
               SWITCHYARD_AGENT_METRICS_PORT, SWITCHYARD_HOST, SWITCHYARD_DCGM_URL, SWITCHYARD_GRPC_TLS_CA, SWITCHYARD_LOG_LEVEL,
               SWITCHYARD_LOG_FORMAT, SWITCHYARD_AGENT_POD (or POD_NAME), SWITCHYARD_AGENT_NAMESPACE (or POD_NAMESPACE)
  GPUs: nvidia-smi (none on a machine without it), or a DCGM exporter with --dcgm-url (MIG instances too);
        with --pod, only the GPUs the exporter maps to the engine's pod.`;

/** `switchyard agent`: runs beside a model server on a GPU node and reports its load. */
export async function agentCommand(argv: readonly string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        scheduler: { type: 'string' }, 'node-id': { type: 'string' }, 'join-token': { type: 'string' }, 'engine-url': { type: 'string' },
        'metrics-port': { type: 'string' }, host: { type: 'string' }, 'log-level': { type: 'string' }, 'log-format': { type: 'string' },
        'dcgm-url': { type: 'string' }, 'tls-ca': { type: 'string' }, pod: { type: 'string' }, namespace: { type: 'string' },
      },
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${HELP}`);
  }
  const env = process.env;
  const need = (flag: string, v: string | undefined, envName: string): string => {
    if (v === undefined || v === '') throw new UsageError(`agent needs --${flag} (or ${envName})\n${HELP}`);
    return v;
  };
  const schedulerTarget = need('scheduler', values.scheduler ?? env['SWITCHYARD_SCHEDULER_URL'], 'SWITCHYARD_SCHEDULER_URL');
  const nodeId = need('node-id', values['node-id'] ?? env['SWITCHYARD_NODE_ID'], 'SWITCHYARD_NODE_ID');
  const joinToken = need('join-token', values['join-token'] ?? env['SWITCHYARD_JOIN_TOKEN'], 'SWITCHYARD_JOIN_TOKEN');
  const engineUrl = need('engine-url', values['engine-url'] ?? env['SWITCHYARD_ENGINE_URL'], 'SWITCHYARD_ENGINE_URL');
  const metricsPort = Number(values['metrics-port'] ?? env['SWITCHYARD_AGENT_METRICS_PORT'] ?? 9400);
  if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) throw new UsageError('--metrics-port must be a port number 0-65535');
  if (!/^https?:\/\//.test(engineUrl)) throw new UsageError('--engine-url must be an http(s) URL');
  const logFormat = values['log-format'] ?? env['SWITCHYARD_LOG_FORMAT'] ?? 'auto';
  if (!isLogFormat(logFormat)) throw new UsageError(`--log-format must be one of ${LOG_FORMATS.join(', ')}`);
  // The downward API's usual names (POD_NAME, POD_NAMESPACE) work without renaming them.
  const pod = values.pod ?? env['SWITCHYARD_AGENT_POD'] ?? env['POD_NAME'];
  const namespace = values.namespace ?? env['SWITCHYARD_AGENT_NAMESPACE'] ?? env['POD_NAMESPACE'];
  if (values.namespace !== undefined && (pod === undefined || pod === '')) throw new UsageError(`--namespace needs --pod\n${HELP}`);
  const logger = createLogger({ name: 'switchyard', level: values['log-level'] ?? env['SWITCHYARD_LOG_LEVEL'] ?? 'info', format: logFormat });
  const agent = await startAgent({
    schedulerTarget: schedulerTarget.replace(/^grpc:\/\//, ''),
    nodeId,
    joinToken,
    engineUrl,
    host: values.host ?? env['SWITCHYARD_HOST'] ?? '127.0.0.1',
    metricsPort,
    log: logger,
    version: packageVersion(),
    dcgmUrl: values['dcgm-url'] ?? env['SWITCHYARD_DCGM_URL'],
    tlsCaFile: values['tls-ca'] ?? env['SWITCHYARD_GRPC_TLS_CA'],
    pod: pod === undefined || pod === '' ? undefined : { pod, namespace: namespace === '' ? undefined : namespace },
  });
  const signal = await waitForSignal();
  logger.info({ signal }, 'shutting down');
  await agent.stop();
}
