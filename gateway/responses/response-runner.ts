import { ErrorCode, SwitchyardError } from '../../core/errors.js';
import type { Settings } from '../../core/config/settings.js';
import type { ChatMessage, ResponseStore, StoredResponse } from '../../core/storage/response-store.js';
import type { RegionRoute } from '../../scheduler/fleet.js';
import type { UpstreamStack } from '../upstream-stack.js';
import { parseEventData, SseSplitter, type Usage } from '../upstream/sse.js';
import { chatBody } from './translate.js';
import { continuationBody } from '../upstream/stream-continuation.js';
import type { OpenUpstream } from '../upstream/proxy.js';
import type { NodeState } from '../../scheduler/node-state.js';

/** What one run of a response produced. */
export interface RunResult {
  readonly text: string;
  readonly usage: Usage | undefined;
  readonly nodeId: string;
  /** `length` when max_output_tokens cut the answer (the response is then `incomplete`). */
  readonly finishReason: string | null;
}

/** Earlier turns followed through `previous_response_id`; more is refused rather than walked. */
const MAX_CHAIN = 256;

/**
 * Runs a response against the fleet as a chat completion: the conversation is rebuilt from the
 * chain of earlier responses, the request takes capacity through the same gate (and ledger) as
 * any other, with the conversation as its affinity key so later turns go where the earlier ones'
 * prefix is cached. Used by the gateway (foreground) and the worker (background).
 */
export class ResponseRunner {
  constructor(
    private readonly stack: UpstreamStack,
    private readonly store: ResponseStore,
    private readonly settings: Settings,
  ) {}

  /** The earlier turns of `r`'s conversation, oldest first: each turn's input and its answer. */
  async history(r: StoredResponse): Promise<ChatMessage[]> {
    const turns: ChatMessage[][] = [];
    let id = r.previousResponseId;
    for (let depth = 0; id !== null; depth++) {
      if (depth >= MAX_CHAIN) throw new SwitchyardError(ErrorCode.InvalidRequest, `A conversation may chain at most ${MAX_CHAIN} responses.`, { param: 'previous_response_id' });
      const prev = await this.store.get(id);
      if (prev === undefined) {
        throw new SwitchyardError(ErrorCode.NotFound, `Previous response with id '${id}' not found.`, { param: 'previous_response_id' });
      }
      turns.push([...prev.input, ...(prev.outputText === null ? [] : [{ role: 'assistant' as const, content: prev.outputText }])]);
      id = prev.previousResponseId;
    }
    return turns.reverse().flat();
  }

  private deadlineMs(r: StoredResponse): number {
    const s = this.settings;
    return r.priority === 'interactive' ? s.queueDeadlineInteractiveMs : r.priority === 'batch' ? s.queueDeadlineBatchMs : s.queueDeadlineStandardMs;
  }

  private async open(
    r: StoredResponse,
    route: readonly RegionRoute[],
    requestId: string,
    signal: AbortSignal,
    stream: boolean,
    continuation?: { readonly body: string; readonly exclude: ReadonlySet<NodeState> },
  ) {
    const body = continuation?.body ?? JSON.stringify(chatBody(r, await this.history(r), stream));
    const estimate = this.stack.costs.estimate(r.model, Buffer.byteLength(body), (r.params['max_tokens'] as number | undefined) ?? undefined);
    return this.stack.proxy.open({
      path: '/v1/chat/completions',
      model: r.model,
      costTokens: estimate.tokens,
      workTokens: estimate.work,
      body,
      requestId,
      route,
      signal,
      priority: r.priority,
      tenant: r.tenant,
      weight: 1,
      deadlineAt: Date.now() + this.deadlineMs(r),
      // The same key space as chat completions' prompt_cache_key: both land on the node whose
      // prefix cache holds that prompt.
      affinityKey: r.promptCacheKey ?? `conversation:${r.conversationId}`,
      exclude: continuation?.exclude,
    });
  }

  /** One chat completion, read whole. */
  async complete(r: StoredResponse, route: readonly RegionRoute[], requestId: string, signal: AbortSignal): Promise<RunResult> {
    const upstream = await this.open(r, route, requestId, signal, false);
    try {
      let json: { choices?: Array<{ message?: { content?: unknown }; finish_reason?: unknown }>; usage?: Usage };
      try {
        json = (await upstream.body.json()) as typeof json;
      } catch (error) {
        throw new SwitchyardError(ErrorCode.UpstreamError, 'The model server connection was lost before the response was complete.', { cause: error });
      }
      const choice = json.choices?.[0];
      const text = typeof choice?.message?.content === 'string' ? choice.message.content : '';
      return { text, usage: json.usage, nodeId: upstream.node.id, finishReason: typeof choice?.finish_reason === 'string' ? choice.finish_reason : null };
    } finally {
      upstream.release();
    }
  }

  /**
   * One streamed chat completion; `onDelta` gets each text fragment as the engine sends it. An
   * upstream that ends without `[DONE]` is an error (the answer may be cut) — unless the stream
   * can go on elsewhere: as for chat completions (SWITCHYARD_FAILOVER_MAX), the text so far is
   * sent to another node as the start of the answer, and its continuation follows the same
   * `onDelta`, so the client, or a background response's event log, sees one answer.
   */
  async stream(
    r: StoredResponse,
    route: readonly RegionRoute[],
    requestId: string,
    signal: AbortSignal,
    onStart: (nodeId: string) => void,
    onDelta: (text: string) => void,
    /** The start of the answer, already delivered by an earlier run: generation continues after it. */
    prefix?: { readonly text: string; readonly tokens: number },
  ): Promise<RunResult> {
    const continued =
      prefix === undefined ? undefined : continuationBody('/v1/chat/completions', chatBody(r, await this.history(r), true), prefix.text, prefix.tokens, 'vllm');
    let upstream = await this.open(r, route, requestId, signal, true, continued === undefined ? undefined : { body: continued, exclude: new Set() });
    onStart(upstream.node.id);
    const parts: string[] = continued === undefined ? [] : [prefix?.text ?? ''];
    const tried = new Set<NodeState>();
    let carriedTokens = continued === undefined ? 0 : (prefix?.tokens ?? 0);
    for (let failovers = 0; ; failovers++) {
      const leg = await this.readLeg(upstream, signal, (delta) => {
        parts.push(delta);
        onDelta(delta);
      });
      if (leg.failure === undefined) {
        const usage = leg.usage === undefined || carriedTokens === 0 ? leg.usage : sumLegs(leg.usage, carriedTokens);
        return { text: parts.join(''), usage, nodeId: upstream.node.id, finishReason: leg.finishReason };
      }
      carriedTokens += leg.tokens;
      tried.add(upstream.node);
      const body =
        failovers < this.settings.failoverMax && !signal.aborted
          ? continuationBody('/v1/chat/completions', chatBody(r, await this.history(r), true), parts.join(''), carriedTokens, upstream.node.spec.engine)
          : undefined;
      const next = body === undefined ? undefined : await this.open(r, route, requestId, signal, true, { body, exclude: tried }).catch(() => undefined);
      this.stack.metrics.failovers.inc({ reason: 'dropped', result: next === undefined ? 'ended' : 'continued' });
      if (next === undefined) throw leg.failure;
      upstream = next;
    }
  }

  /** Reads one leg of a stream, to its end or its failure; a node declared down ends it at once. */
  private async readLeg(
    upstream: OpenUpstream,
    signal: AbortSignal,
    onDelta: (text: string) => void,
  ): Promise<{ usage: Usage | undefined; finishReason: string | null; tokens: number; failure: SwitchyardError | undefined }> {
    let usage: Usage | undefined;
    let finishReason: string | null = null;
    let done = false;
    let tokens = 0;
    const splitter = new SseSplitter();
    const onEvent = (event: Buffer): void => {
      const data = parseEventData(event);
      if (data === undefined) {
        if (event.indexOf('[DONE]') !== -1) done = true;
        return;
      }
      if (typeof data !== 'object' || data === null) return;
      const chunk = data as { choices?: Array<{ delta?: { content?: unknown }; finish_reason?: unknown }>; usage?: Usage | null; error?: { message?: string } };
      if (chunk.error !== undefined) throw new SwitchyardError(ErrorCode.UpstreamError, chunk.error.message ?? 'The model server failed mid-stream.');
      if (chunk.usage !== undefined && chunk.usage !== null) usage = chunk.usage;
      const choice = chunk.choices?.[0];
      if (typeof choice?.finish_reason === 'string') finishReason = choice.finish_reason;
      const delta = choice?.delta?.content;
      if (typeof delta === 'string' && delta !== '') {
        tokens++;
        onDelta(delta);
      }
    };
    const untrack = this.stack.streams.track(upstream.node.id, () => upstream.body.destroy(new Error('node declared down')));
    try {
      for await (const chunk of upstream.body) splitter.push(chunk as Buffer, onEvent);
    } catch (error) {
      // The engine's own error event is the answer's: not continued elsewhere.
      if (error instanceof SwitchyardError || signal.aborted) throw error;
      return { usage, finishReason, tokens, failure: new SwitchyardError(ErrorCode.UpstreamError, 'The model server connection was lost mid-stream.', { cause: error }) };
    } finally {
      untrack();
      upstream.release();
    }
    if (!done) return { usage, finishReason, tokens, failure: new SwitchyardError(ErrorCode.UpstreamError, 'The model server ended the stream early.') };
    return { usage, finishReason, tokens, failure: undefined };
  }
}

/** The last leg's usage with the earlier legs' tokens moved from its prompt to its completion. */
function sumLegs(usage: Usage, carried: number): Usage {
  const prompt = Math.max(0, usage.prompt_tokens - carried);
  const completion = usage.completion_tokens + carried;
  return { ...usage, prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}
