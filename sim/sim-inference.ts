import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BatchEngine, SequenceHandle } from './batch-engine.js';
import { DROP_AFTER_TOKENS, drawFailure, sendFailure, stall } from './sim-failures.js';
import type { CloseWatch } from './sim-http.js';
import { readJsonBody, sendJson, sendVllmError, watchClose } from './sim-http.js';
import type { SimOptions } from './sim-options.js';
import type { EmbeddingRequest, GenerationRequest } from './sim-requests.js';
import { parseChatRequest, parseCompletionRequest, parseEmbeddingRequest } from './sim-requests.js';
import { embeddingOf, planOutput } from './sim-text.js';
import type { ResponseWriter } from './sim-wire.js';
import { SSE_DONE, chatWriter, completionWriter, usageOf } from './sim-wire.js';

/** What the inference handlers share with the server. */
export interface InferenceContext {
  readonly options: SimOptions;
  readonly engine: BatchEngine;
  readonly failureRng: () => number;
  /** Stall timers, cleared on close. */
  readonly timers: Set<NodeJS.Timeout>;
  readonly startedAt: number;
  /** Inference requests received, answered or not. */
  received: number;
  /** Requests whose client left before they reached the engine (during a stall, say). */
  abortedOutsideEngine: number;
}

export type InferenceKind = 'chat' | 'completion' | 'embedding';

export function isLoading(ctx: InferenceContext): boolean {
  return performance.now() - ctx.startedAt < ctx.options.failures.slowStartMs;
}

export async function handleInference(
  ctx: InferenceContext,
  kind: InferenceKind,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  ctx.received++;
  if (isLoading(ctx)) {
    sendVllmError(res, 503, 'ServiceUnavailableError', 'The model is still loading.');
    return;
  }
  const watch = watchClose(res, () => {
    ctx.abortedOutsideEngine++;
  });
  const body = await readJsonBody(req);
  const { models } = ctx.options;
  const parsed =
    kind === 'chat'
      ? parseChatRequest(body, models)
      : kind === 'completion'
        ? parseCompletionRequest(body, models)
        : parseEmbeddingRequest(body, models);
  const failure = drawFailure(ctx.failureRng, ctx.options.failures);
  if (failure.stallMs > 0) await stall(failure.stallMs, res, ctx.timers);
  // The client may have left while we read the body or stalled; onAbort already counted it.
  if (watch.closed) return;
  if (failure.status !== 0) {
    watch.settle();
    sendFailure(res, failure.status);
    return;
  }
  if ('inputs' in parsed) {
    answerEmbeddings(ctx, res, watch, parsed, failure.drop);
    return;
  }
  const writer = kind === 'chat' ? chatWriter(parsed.model, parsed.includeUsage) : completionWriter(parsed.model, parsed.includeUsage);
  generate(ctx, res, watch, parsed, writer, failure.drop);
}

function destroy(res: ServerResponse, watch: CloseWatch): void {
  watch.settle();
  res.socket?.destroy();
}

function answerEmbeddings(
  ctx: InferenceContext,
  res: ServerResponse,
  watch: CloseWatch,
  r: EmbeddingRequest,
  drop: boolean,
): void {
  if (drop) {
    ctx.abortedOutsideEngine++;
    destroy(res, watch);
    return;
  }
  const { seed, embeddingDim } = ctx.options;
  const data = r.inputs.map((input, index) => {
    const v = embeddingOf(seed, r.model, input, embeddingDim);
    const embedding = r.base64 ? Buffer.from(Float32Array.from(v).buffer).toString('base64') : v;
    return { object: 'embedding', embedding, index };
  });
  ctx.engine.recordPooling(r.model, r.promptTokens);
  watch.settle();
  sendJson(res, 200, {
    object: 'list',
    data,
    model: r.model,
    usage: { prompt_tokens: r.promptTokens, total_tokens: r.promptTokens },
  });
}

/** Runs one sequence through the engine and writes it out, one SSE event per token when streaming. */
function generate(
  ctx: InferenceContext,
  res: ServerResponse,
  watch: CloseWatch,
  g: GenerationRequest,
  writer: ResponseWriter,
  drop: boolean,
): void {
  const plan = planOutput({
    seed: ctx.options.seed,
    model: g.model,
    promptKey: g.promptKey,
    echoWords: g.echoWords,
    continuedTokens: g.continuedTokens,
    maxTokens: g.maxTokens,
    ignoreEos: g.ignoreEos,
  });
  const dropAfter = drop ? Math.min(DROP_AFTER_TOKENS, plan.count) : -1;
  let emitted = 0;
  let text = '';
  const dropNow = (): void => {
    handle.abort();
    destroy(res, watch);
  };
  if (g.stream) {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    // Headers go out at once, as vLLM's StreamingResponse sends them before the first token.
    res.flushHeaders();
  }
  const startStream = (): void => {
    for (const event of writer.streamStart()) res.write(event);
  };
  const handle: SequenceHandle = ctx.engine.submit(
    { model: g.model, promptTokens: g.promptTokens, plan },
    {
      onToken(token) {
        emitted++;
        const dropping = emitted === dropAfter;
        if (!g.stream) {
          text += token;
          if (dropping) dropNow();
          return;
        }
        if (emitted === 1) startStream();
        if (!dropping) {
          res.write(writer.streamToken(token));
          return;
        }
        // destroy() discards unflushed writes, so wait until the tokens reach the kernel:
        // the client must see them arrive before the connection dies.
        handle.abort();
        watch.settle();
        res.write(writer.streamToken(token), () => res.socket?.destroy());
      },
      onFinish(reason) {
        if (drop) {
          dropNow();
          return;
        }
        watch.settle();
        const usage = usageOf(g.promptTokens, emitted);
        if (!g.stream) {
          sendJson(res, 200, writer.plain(text, reason, usage));
          return;
        }
        if (emitted === 0) startStream();
        res.write(writer.streamFinish(reason));
        if (g.includeUsage) res.write(writer.streamUsage(usage));
        res.end(SSE_DONE);
      },
    },
  );
  // From here a client that leaves frees the engine slot; the engine counts the abort.
  watch.onAbort = () => handle.abort();
}
