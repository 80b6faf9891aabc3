import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { createLogger, isLogFormat, LOG_FORMATS } from '../../core/logger.js';
import { packageVersion } from '../../core/version.js';
import { startAgent, type AgentBootstrap } from '../../gpu-agent/agent.js';
import { UsageError, waitForSignal } from '../run-command.js';

/** Also printed by `switchyard agent --help`. */
export const HELP = `usage: switchyard agent --scheduler HOST:PORT --node-id ID --join-token TOKEN --engine-url URL
         [--metrics-port 9400] [--host 127.0.0.1] [--dcgm-url http://…/metrics] [--tls-ca ca.pem]
         [--log-level info] [--log-format auto|json|pretty] [--pod NAME [--namespace NS]]
       switchyard agent --scheduler HOST:PORT --bootstrap-token TOKEN --engine-url URL
         --tokens-per-second N --max-sequences N [--node-id ID] [--advertise-url URL]
         [--engine vllm|sglang|llamacpp|tgi|ollama|openai] [--credential-file PATH] [same options as above]
  environment: SWITCHYARD_SCHEDULER_URL, SWITCHYARD_NODE_ID, SWITCHYARD_JOIN_TOKEN, SWITCHYARD_ENGINE_URL,
               SWITCHYARD_AGENT_METRICS_PORT, SWITCHYARD_HOST, SWITCHYARD_DCGM_URL, SWITCHYARD_GRPC_TLS_CA, SWITCHYARD_LOG_LEVEL,
               SWITCHYARD_LOG_FORMAT, SWITCHYARD_AGENT_POD (or POD_NAME), SWITCHYARD_AGENT_NAMESPACE (or POD_NAMESPACE),
               SWITCHYARD_BOOTSTRAP_TOKEN, SWITCHYARD_AGENT_ADVERTISE_URL, SWITCHYARD_AGENT_ENGINE,
               SWITCHYARD_AGENT_TOKENS_PER_SECOND, SWITCHYARD_AGENT_MAX_SEQUENCES, SWITCHYARD_AGENT_CREDENTIAL_FILE
  GPUs: nvidia-smi (none on a machine without it), or a DCGM exporter with --dcgm-url (MIG instances too);
        with --pod, only the GPUs the exporter maps to the engine's pod.
  Self-registration: with --bootstrap-token the scheduler registers the node in the token's region and
        cluster on the first Hello (id: --node-id, else POD_NAME, else the host name; models: the engine's
        /v1/models) and hands the agent the node's own credential; kept in --credential-file if given.`;

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
        'bootstrap-token': { type: 'string' }, 'advertise-url': { type: 'string' }, engine: { type: 'string' },
        'tokens-per-second': { type: 'string' }, 'max-sequences': { type: 'string' }, 'credential-file': { type: 'string' },
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
  const engineUrl = need('engine-url', values['engine-url'] ?? env['SWITCHYARD_ENGINE_URL'], 'SWITCHYARD_ENGINE_URL');
  const bootstrapToken = values['bootstrap-token'] ?? env['SWITCHYARD_BOOTSTRAP_TOKEN'];
  const bootstrap = bootstrapToken === undefined || bootstrapToken === '' ? undefined : bootstrapOptions(bootstrapToken, values, env);
  // A self-registering agent's id is stable across restarts: the StatefulSet's or Deployment's pod
  // name (downward API), else the host name.
  const nodeId = bootstrap === undefined
    ? need('node-id', values['node-id'] ?? env['SWITCHYARD_NODE_ID'], 'SWITCHYARD_NODE_ID')
    : values['node-id'] ?? nonEmpty(env['SWITCHYARD_NODE_ID']) ?? nonEmpty(env['POD_NAME']) ?? hostname().toLowerCase();
  const joinToken = bootstrap === undefined
    ? need('join-token', values['join-token'] ?? env['SWITCHYARD_JOIN_TOKEN'], 'SWITCHYARD_JOIN_TOKEN')
    : values['join-token'] ?? env['SWITCHYARD_JOIN_TOKEN'] ?? '';
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
    bootstrap,
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

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

const ENGINES = ['vllm', 'sglang', 'llamacpp', 'tgi', 'ollama', 'openai'];

function bootstrapOptions(token: string, values: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): AgentBootstrap {
  const str = (flag: string, envName: string): string | undefined => {
    const v = values[flag];
    return typeof v === 'string' ? v : nonEmpty(env[envName]);
  };
  const positive = (flag: string, envName: string, integer: boolean): number => {
    const raw = str(flag, envName);
    if (raw === undefined) throw new UsageError(`agent --bootstrap-token needs --${flag} (or ${envName}): the node's declared capacity\n${HELP}`);
    const n = Number(raw);
    if (!(n > 0) || (integer && !Number.isInteger(n))) throw new UsageError(`--${flag} must be a positive ${integer ? 'integer' : 'number'}`);
    return n;
  };
  const advertiseUrl = str('advertise-url', 'SWITCHYARD_AGENT_ADVERTISE_URL');
  if (advertiseUrl !== undefined && !/^https?:\/\//.test(advertiseUrl)) throw new UsageError('--advertise-url must be an http(s) URL');
  const engine = str('engine', 'SWITCHYARD_AGENT_ENGINE');
  if (engine !== undefined && !ENGINES.includes(engine)) throw new UsageError(`--engine must be one of ${ENGINES.join(', ')}`);
  return {
    token,
    advertiseUrl,
    engine,
    tokensPerSecond: positive('tokens-per-second', 'SWITCHYARD_AGENT_TOKENS_PER_SECOND', false),
    maxSequences: positive('max-sequences', 'SWITCHYARD_AGENT_MAX_SEQUENCES', true),
    credentialFile: str('credential-file', 'SWITCHYARD_AGENT_CREDENTIAL_FILE'),
  };
}
