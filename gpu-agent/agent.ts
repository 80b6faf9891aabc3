import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, type Registry } from 'prom-client';
import { createRegistry } from '../core/metrics.js';
import { packageVersion } from '../core/version.js';
import type { Logger } from '../core/logger.js';
import type { GpuStats, Hello, LoadReport, SchedulerCommand } from '../proto/agent-protocol.js';
import { defaultFetchText, detectEngine, type FetchText } from './probes/detect.js';
import { dcgmGpuSamples, dcgmHasPodLabels, type DcgmPodFilter } from './probes/dcgm.js';
import { runNvidiaSmi, type ExecFile } from './probes/nvidia-smi.js';
import { parsePromText } from './probes/prom-text.js';
import type { EngineSample, GpuSample } from './probes/types.js';
import { AgentReporter } from './reporter.js';

export interface AgentOptions {
  readonly schedulerTarget: string;
  readonly nodeId: string;
  /** The node's join token; empty when the agent registers its node with `bootstrap`. */
  readonly joinToken: string;
  /** Self-registration: the node is registered by the scheduler on the first Hello. */
  readonly bootstrap?: AgentBootstrap | undefined;
  /** The model server beside this agent, e.g. http://127.0.0.1:8000. */
  readonly engineUrl: string;
  readonly host: string;
  /** The agent's own /metrics (switchyard_agent_* names); 0 picks a free port. */
  readonly metricsPort: number;
  readonly log: Logger;
  readonly version: string;
  /** Read GPUs from this DCGM exporter's /metrics instead of running nvidia-smi. */
  readonly dcgmUrl?: string | undefined;
  /**
   * The engine's pod: where the DCGM exporter maps GPUs to pods (Kubernetes), only the GPUs and
   * MIG instances attached to it are reported.
   */
  readonly pod?: DcgmPodFilter | undefined;
  /** PEM files: trust this CA for the scheduler's TLS (absent: plaintext). */
  readonly tlsCaFile?: string | undefined;
  readonly exec?: ExecFile;
  readonly fetchText?: FetchText;
}

export interface AgentBootstrap {
  /** A bootstrap token (`switchyard nodes bootstrap-token create`). */
  readonly token: string;
  /** The engine as gateways reach it (e.g. http://<pod IP>:8000); default: engineUrl. */
  readonly advertiseUrl?: string | undefined;
  /** vllm, sglang, llamacpp, tgi, ollama or openai; default: detected from the engine's metrics. */
  readonly engine?: string | undefined;
  readonly tokensPerSecond: number;
  readonly maxSequences: number;
  /**
   * Where the node's credential is kept once issued (mode 0600), and read at start: a restarted
   * agent then reconnects with it, even after its bootstrap token expired or was revoked.
   */
  readonly credentialFile?: string | undefined;
}

export interface AgentHandle {
  readonly metricsUrl: string;
  readonly reporter: AgentReporter;
  stop(): Promise<void>;
}

/**
 * `switchyard agent`: reads the GPUs (nvidia-smi; none on a machine without it) and the engine
 * (its /metrics, or Ollama's /api/ps, detected each time), streams both to the scheduler, and
 * re-exports them on its own /metrics under switchyard_agent_* names (never the engines' names,
 * which would collide in Prometheus with a direct scrape of the engine).
 */
export async function startAgent(opts: AgentOptions): Promise<AgentHandle> {
  const log = opts.log.child({ module: 'agent', nodeId: opts.nodeId });
  // switchyard_build_info{role="agent"} and process metrics, like every Switchyard process.
  const registry = createRegistry('agent', packageVersion());
  const gauges = agentGauges(registry);
  let lastEngine: EngineSample | undefined;
  let lastGpus: GpuSample[] = [];
  let gpuErrorLogged = false;
  let draining = false;

  const readGpus = async (): Promise<{ gpus: GpuSample[]; error: { code: string; message: string } | undefined }> => {
    if (opts.dcgmUrl === undefined) return runNvidiaSmi(opts.exec);
    try {
      const res = await fetchText(opts.dcgmUrl);
      if (res.status !== 200) return { gpus: [], error: { code: 'dcgm_http', message: `DCGM exporter answered HTTP ${res.status}` } };
      const samples = parsePromText(res.body);
      const gpus = dcgmGpuSamples(samples, opts.pod);
      if (opts.pod !== undefined && gpus.length === 0 && dcgmHasPodLabels(samples)) {
        return { gpus, error: { code: 'dcgm_no_gpu_for_pod', message: `the DCGM exporter lists no GPU attached to pod ${podName(opts.pod)}` } };
      }
      return { gpus, error: undefined };
    } catch (err) {
      return { gpus: [], error: { code: 'dcgm_unreachable', message: (err as Error).message } };
    }
  };
  const collect = async (): Promise<LoadReport> => {
    const [gpu, engine] = await Promise.all([readGpus(), detectEngine(opts.engineUrl, fetchText)]);
    if (gpu.error !== undefined && !gpuErrorLogged) log.warn({ code: gpu.error.code, err: gpu.error.message }, 'reading the GPUs failed');
    gpuErrorLogged = gpu.error !== undefined;
    lastGpus = gpu.gpus;
    lastEngine = engine?.sample;
    if (engine === undefined) log.debug('engine not answering');
    return { timestamp_ms: Date.now(), gpus: gpu.gpus.map(toGpuStats), engine: toEngineStats(engine?.sample) };
  };

  // What the engine is and serves, for Hello (reports re-detect, so a restarted engine is seen).
  const fetchText = opts.fetchText ?? defaultFetchText();
  const detected = await detectEngine(opts.engineUrl, fetchText);
  const models = await listModels(opts.engineUrl, fetchText);
  const hello: Hello = {
    node_id: opts.nodeId, join_token: opts.joinToken, engine_kind: detected?.engine ?? 'unknown', engine_version: '',
    models, agent_version: opts.version,
  };
  const boot = opts.bootstrap;
  const savedCredential = boot?.credentialFile === undefined ? undefined : await readCredential(boot.credentialFile);
  const reporter = new AgentReporter({
    target: opts.schedulerTarget,
    ...(opts.tlsCaFile === undefined ? {} : { tlsCa: await readFile(opts.tlsCaFile) }),
    // A self-registering agent asks its engine again before each attempt: an engine still loading
    // its weights lists no model yet, and the scheduler registers no node without one.
    hello: boot === undefined ? hello : () => bootstrapHello(hello, boot, opts.engineUrl, fetchText),
    onCredential: (credential) => {
      log.info({ credentialFile: boot?.credentialFile }, 'node registered: credential received');
      if (boot?.credentialFile !== undefined) {
        writeFile(boot.credentialFile, credential + '\n', { mode: 0o600 }).catch((err: unknown) =>
          log.warn({ err: (err as Error).message, file: boot.credentialFile }, 'cannot keep the node credential; a restart re-joins with the bootstrap token'),
        );
      }
    },
    collect,
    log,
    onRefused: (code) => gauges.refused(code),
    onCommand: (cmd: SchedulerCommand) => {
      if (cmd.drain) draining = true;
      if (cmd.resume) draining = false;
      if (cmd.drain || cmd.resume) log.info({ draining }, cmd.drain ? 'node drained by the operator' : 'node resumed');
    },
  });

  const server: Server = createServer((req, res) => {
    if (req.url === '/healthz') {
      // Refused is the one state retrying alone will not fix; a scheduler that is merely away is not
      // this agent's fault, so it stays healthy then.
      const refusal = reporter.refusal;
      if (refusal === undefined) res.writeHead(200).end();
      else res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end(`refused by the scheduler: ${refusal.code}: ${refusal.details}\n`);
      return;
    }
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    gauges.update(lastGpus, lastEngine, reporter.connected, draining, reporter.refusal !== undefined);
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  if (savedCredential !== undefined) reporter.credential = savedCredential;
  await new Promise<void>((resolve) => server.listen(opts.metricsPort, opts.host, resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : opts.metricsPort;
  const metricsUrl = `http://${opts.host}:${port}`;
  reporter.start();
  log.info({ url: metricsUrl, scheduler: opts.schedulerTarget, engineUrl: opts.engineUrl }, 'agent running');
  return {
    metricsUrl,
    reporter,
    async stop() {
      reporter.stop();
      await new Promise((r) => server.close(r));
    },
  };
}

const ENGINE_NAMES: ReadonlySet<string> = new Set(['vllm', 'sglang', 'llamacpp', 'tgi', 'ollama']);

async function bootstrapHello(base: Hello, boot: AgentBootstrap, engineUrl: string, fetchText: FetchText): Promise<Hello> {
  const models = base.models.length > 0 ? base.models : await listModels(engineUrl, fetchText);
  const engine = boot.engine ?? (ENGINE_NAMES.has(base.engine_kind) ? base.engine_kind : (await detectEngine(engineUrl, fetchText))?.engine ?? 'openai');
  return {
    ...base,
    models,
    bootstrap_token: boot.token,
    spec: { url: boot.advertiseUrl ?? engineUrl, engine, tokens_per_second: boot.tokensPerSecond, max_sequences: boot.maxSequences },
  };
}

async function readCredential(file: string): Promise<string | undefined> {
  try {
    const text = (await readFile(file, 'utf8')).trim();
    return text === '' ? undefined : text;
  } catch {
    return undefined; // first start: none yet
  }
}

function podName(pod: DcgmPodFilter): string {
  return pod.namespace === undefined ? pod.pod : `${pod.namespace}/${pod.pod}`;
}

/** Model ids from the engine's OpenAI-compatible /v1/models; empty when it does not answer. */
async function listModels(engineUrl: string, fetchText: FetchText): Promise<string[]> {
  try {
    const res = await fetchText(`${engineUrl.replace(/\/+$/, '')}/v1/models`);
    const body = JSON.parse(res.body) as { data?: Array<{ id?: unknown }> };
    return (body.data ?? []).map((m) => m.id).filter((id): id is string => typeof id === 'string');
  } catch {
    return [];
  }
}

function toGpuStats(g: GpuSample): GpuStats {
  const out: GpuStats = { index: g.index, uuid: g.uuid, name: g.name };
  if (g.utilization !== null) out.utilization = g.utilization;
  if (g.memoryUsedBytes !== null) out.memory_used_bytes = g.memoryUsedBytes;
  if (g.memoryTotalBytes !== null) out.memory_total_bytes = g.memoryTotalBytes;
  if (g.temperatureC !== null) out.temperature_celsius = g.temperatureC;
  if (g.powerWatts !== null) out.power_watts = g.powerWatts;
  if (g.mig !== undefined) {
    out.mig_gpu_instance_id = g.mig.gpuInstanceId;
    out.mig_profile = g.mig.profile;
  }
  return out;
}

function toEngineStats(e: EngineSample | undefined): NonNullable<LoadReport['engine']> {
  const out: NonNullable<LoadReport['engine']> = { running_requests: e?.running ?? 0, waiting_requests: e?.waiting ?? 0 };
  if (e === undefined) out.engine_unreachable = true;
  if (e?.kvCacheUsage != null) out.kv_cache_usage = e.kvCacheUsage;
  if (e?.promptTokensTotal != null) out.prompt_tokens_total = e.promptTokensTotal;
  if (e?.generationTokensTotal != null) out.generation_tokens_total = e.generationTokensTotal;
  return out;
}

function agentGauges(registry: Registry) {
  const registers = [registry];
  // A MIG instance adds its instance id and profile; a whole GPU leaves both labels out. At most
  // seven instances per GPU and a fixed set of profiles, so the label set stays bounded.
  const gpuLabels = ['gpu', 'uuid', 'name', 'mig_instance', 'mig_profile'] as const;
  const util = new Gauge({ name: 'switchyard_agent_gpu_utilization_ratio', help: 'GPU utilisation 0-1 (absent when unknown).', labelNames: gpuLabels, registers });
  const memUsed = new Gauge({ name: 'switchyard_agent_gpu_memory_used_bytes', help: 'GPU memory in use.', labelNames: gpuLabels, registers });
  const memTotal = new Gauge({ name: 'switchyard_agent_gpu_memory_total_bytes', help: 'GPU memory in total.', labelNames: gpuLabels, registers });
  const temp = new Gauge({ name: 'switchyard_agent_gpu_temperature_celsius', help: 'GPU temperature.', labelNames: gpuLabels, registers });
  const power = new Gauge({ name: 'switchyard_agent_gpu_power_watts', help: 'GPU power draw.', labelNames: gpuLabels, registers });
  const running = new Gauge({ name: 'switchyard_agent_engine_running_requests', help: 'Requests the engine is running.', registers });
  const waiting = new Gauge({ name: 'switchyard_agent_engine_waiting_requests', help: 'Requests waiting inside the engine.', registers });
  const kv = new Gauge({ name: 'switchyard_agent_engine_kv_cache_usage_ratio', help: 'KV-cache in use, 0-1.', registers });
  const connected = new Gauge({ name: 'switchyard_agent_connected', help: '1 while the scheduler stream is up.', registers });
  const drained = new Gauge({ name: 'switchyard_agent_draining', help: '1 while the operator has drained this node.', registers });
  const refused = new Gauge({ name: 'switchyard_agent_refused', help: '1 while the scheduler refuses this agent (until it welcomes it).', registers });
  const refusals = new Counter({
    name: 'switchyard_agent_refused_total',
    help: 'Connections the scheduler refused, by gRPC code.',
    labelNames: ['code'] as const,
    registers,
  });
  const set = (g: Gauge<(typeof gpuLabels)[number]>, labels: Record<string, string>, v: number | null): void => {
    if (v !== null) g.set(labels, v);
  };
  return {
    refused(code: string): void {
      refusals.inc({ code });
    },
    update(gpus: readonly GpuSample[], engine: EngineSample | undefined, isConnected: boolean, isDraining: boolean, isRefused: boolean): void {
      for (const g of [util, memUsed, memTotal, temp, power]) g.reset();
      for (const g of gpus) {
        const labels: Record<string, string> = { gpu: String(g.index), uuid: g.uuid, name: g.name };
        if (g.mig !== undefined) {
          labels['mig_instance'] = String(g.mig.gpuInstanceId);
          labels['mig_profile'] = g.mig.profile;
        }
        set(util, labels, g.utilization);
        set(memUsed, labels, g.memoryUsedBytes);
        set(memTotal, labels, g.memoryTotalBytes);
        set(temp, labels, g.temperatureC);
        set(power, labels, g.powerWatts);
      }
      running.reset();
      waiting.reset();
      kv.reset();
      if (engine?.running != null) running.set(engine.running);
      if (engine?.waiting != null) waiting.set(engine.waiting);
      if (engine?.kvCacheUsage != null) kv.set(engine.kvCacheUsage);
      connected.set(isConnected ? 1 : 0);
      drained.set(isDraining ? 1 : 0);
      refused.set(isRefused ? 1 : 0);
    },
  };
}
