import { createServer } from 'node:http';
import { hostname } from 'node:os';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BatchEngine } from './batch-engine.js';
import type { SimGpuIdentity } from './sim-dcgm.js';
import { DCGM_PATH, renderDcgmMetrics, simGpuIdentities } from './sim-dcgm.js';
import { sendDetail, sendEmpty, sendJson, sendText, sendVllmError } from './sim-http.js';
import type { InferenceContext, InferenceKind } from './sim-inference.js';
import { handleInference, isLoading } from './sim-inference.js';
import { METRICS_CONTENT_TYPE, renderVllmMetrics } from './sim-metrics.js';
import type { SimOptions } from './sim-options.js';
import { validateSimOptions } from './sim-options.js';
import { SimRequestError } from './sim-requests.js';
import { createRng, seedHash } from './sim-text.js';

export interface SimStats {
  /** Inference requests received (chat, completions, embeddings), whatever their answer. */
  received: number;
  running: number;
  waiting: number;
  peakRunning: number;
  /** Most requests inside the engine at once (running + waiting): what a scheduler sent it. */
  peakInFlight: number;
  /** Requests answered in full. */
  completed: number;
  /** Requests whose connection closed before the answer finished: client aborts and scripted drops. */
  aborted: number;
  promptTokens: number;
  generationTokens: number;
}

export interface SimServer {
  readonly port: number;
  readonly url: string;
  stats(): SimStats;
  /** Stops accepting, destroys open connections, stops the scheduler. Idempotent. */
  close(): Promise<void>;
}

export interface SimLogger {
  info(obj: object, msg: string): void;
}

const INFERENCE_ROUTES: Readonly<Record<string, InferenceKind>> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completion',
  '/v1/embeddings': 'embedding',
};
const GET_ROUTES = new Set(['/health', '/metrics', DCGM_PATH, '/v1/models', '/sim/stats']);

/** What the GET pages need besides the inference context. */
interface PageState {
  readonly startedAtMs: number;
  readonly hostname: string;
  /** Set once the server listens: the UUIDs hash the bound port. */
  gpus: readonly SimGpuIdentity[];
}

function statsOf(ctx: InferenceContext): SimStats {
  const s = ctx.engine.snapshot();
  return {
    received: ctx.received,
    running: s.running,
    waiting: s.waiting,
    peakRunning: s.peakRunning,
    peakInFlight: s.peakInFlight,
    completed: s.completed,
    aborted: s.aborted + ctx.abortedOutsideEngine,
    promptTokens: s.promptTokens,
    generationTokens: s.generationTokens,
  };
}

function handleGet(ctx: InferenceContext, path: string, res: ServerResponse, pages: PageState): void {
  switch (path) {
    case '/health':
      sendEmpty(res, isLoading(ctx) ? 503 : 200);
      return;
    case '/metrics':
      sendText(res, 200, METRICS_CONTENT_TYPE, renderVllmMetrics(ctx.engine.snapshot(), pages.startedAtMs));
      return;
    case DCGM_PATH: {
      const { running, kvCacheUsage } = ctx.engine.snapshot();
      const load = { running, kvCacheUsage, maxSeqs: ctx.options.maxSeqs };
      sendText(res, 200, METRICS_CONTENT_TYPE, renderDcgmMetrics(ctx.options.gpus, pages.gpus, pages.hostname, load));
      return;
    }
    case '/v1/models': {
      const created = Math.floor(pages.startedAtMs / 1000);
      const data = ctx.options.models.map((id) => ({ id, object: 'model', created, owned_by: 'switchyard-sim' }));
      sendJson(res, 200, { object: 'list', data });
      return;
    }
    case '/sim/stats':
      sendJson(res, 200, statsOf(ctx));
      return;
  }
}

async function route(ctx: InferenceContext, req: IncomingMessage, res: ServerResponse, pages: PageState): Promise<void> {
  const requestId = req.headers['x-request-id'];
  if (typeof requestId === 'string') res.setHeader('x-request-id', requestId);
  const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
  const kind = INFERENCE_ROUTES[path];
  if (kind !== undefined) {
    if (req.method !== 'POST') return sendDetail(res, 405, 'Method Not Allowed');
    return handleInference(ctx, kind, req, res);
  }
  if (GET_ROUTES.has(path)) {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendDetail(res, 405, 'Method Not Allowed');
    return handleGet(ctx, path, res, pages);
  }
  sendDetail(res, 404, 'Not Found');
}

/** Starts a simulated vLLM node; resolves once it listens. */
export async function startSim(options: SimOptions, log?: SimLogger): Promise<SimServer> {
  validateSimOptions(options);
  const pages: PageState = { startedAtMs: Date.now(), hostname: hostname(), gpus: [] };
  const ctx: InferenceContext = {
    options,
    engine: new BatchEngine({
      models: options.models,
      tokensPerSecond: options.tokensPerSecond,
      seqTokensPerSecond: options.seqTokensPerSecond,
      maxSeqs: options.maxSeqs,
      ttftMs: options.ttftMs,
    }),
    failureRng: createRng(seedHash(options.seed, 'failures')),
    timers: new Set(),
    startedAt: performance.now(),
    received: 0,
    abortedOutsideEngine: 0,
  };
  const server = createServer({ noDelay: true, keepAliveTimeout: 65_000 }, (req, res) => {
    route(ctx, req, res, pages).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof SimRequestError) {
        sendVllmError(res, err.status, err.type, err.message, err.param);
        return;
      }
      log?.info({ err: err instanceof Error ? err.message : String(err) }, 'sim request failed');
      sendVllmError(res, 500, 'InternalServerError', 'Internal server error.');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  pages.gpus = simGpuIdentities(options.gpus.count, options.seed, port);
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  const url = `http://${host}:${port}`;
  log?.info({ url, port, models: options.models }, 'sim listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    url,
    stats: () => statsOf(ctx),
    close() {
      closing ??= new Promise<void>((resolve) => {
        ctx.engine.close();
        for (const t of ctx.timers) clearTimeout(t);
        ctx.timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
