import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../../core/errors.js';
import { TERMINAL_STATUSES, type ResponseStore, type StoredResponse } from '../../../core/storage/response-store.js';
import type { GatewayDeps } from '../../gateway-deps.js';
import type { CallContext } from '../../request-context.js';
import type { JobQueue } from '../../responses/background-jobs.js';
import { LoggedEventSink, type EventLog } from '../../responses/response-event-log.js';
import { ResponseEventWriter, toClient } from '../../responses/response-events.js';
import type { ResponseRunner, RunResult } from '../../responses/response-runner.js';
import { inputItemsPage, newMessageId, newResponseId, parseResponsesRequest, regionOfResponseId, toResponseObject } from '../../responses/translate.js';
import type { RegionPeers } from '../../regions/region-peers.js';
import { openEventStream } from './event-stream.js';
import { trySpill } from './spill.js';

export interface ResponsesDeps {
  readonly store: ResponseStore;
  readonly runner: ResponseRunner;
  /**
   * Where background responses go: BullMQ jobs run by `switchyard worker` (with Redis), or this
   * process (`switchyard start` without Redis). Absent: background responses are refused.
   */
  readonly jobs: JobQueue | undefined;
  /** Standalone neighbour regions: a response id naming one of them is served there. */
  readonly peers: RegionPeers | undefined;
  /** The events of streamed background responses (Redis, or memory beside in-process jobs). */
  readonly events: EventLog | undefined;
}

/**
 * OpenAI's Responses API (text subset): create (plain, streaming, background), retrieve, input
 * items, cancel, delete. Foreground responses run here, translated to chat completions;
 * background ones are queued for the region's workers. Responses belong to the tenant that
 * created them: another tenant's id is "not found".
 */
export function responsesRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const r = deps.responses;
  app.post('/v1/responses', { config: { jsonBodyRequired: true } }, (request, reply) => create(deps, r, request, reply));
  // A response id that names another standalone region is served by that region's gateway.
  const preHandler = (request: FastifyRequest, reply: FastifyReply) => inItsRegion(deps, r, request, reply);
  app.get('/v1/responses/:id', { preHandler }, async (request, reply) => {
    const found = await owned(r.store, request);
    const query = request.query as Record<string, unknown>;
    if (query['stream'] !== 'true') return toResponseObject(found);
    if (!found.streamed || r.events === undefined) {
      throw new SwitchyardError(ErrorCode.InvalidRequest, 'Only background responses created with `stream: true` can be streamed again.', { param: 'stream' });
    }
    const after = query['starting_after'] === undefined ? -1 : Number(query['starting_after']);
    if (!Number.isInteger(after) || (query['starting_after'] !== undefined && after < 0)) {
      throw new SwitchyardError(ErrorCode.InvalidRequest, "'starting_after' must be a sequence number (an integer ≥ 0).", { param: 'starting_after' });
    }
    return followLog(deps, r, found, request, reply, after);
  });
  app.get('/v1/responses/:id/input_items', { preHandler }, async (request) => inputItemsPage(await owned(r.store, request), request.query as Record<string, unknown>));
  app.post('/v1/responses/:id/cancel', { preHandler }, async (request) => {
    const current = await owned(r.store, request);
    if (!current.background) {
      throw new SwitchyardError(ErrorCode.InvalidRequest, 'Only background responses can be cancelled.', { param: 'response_id' });
    }
    const cancelled = await r.store.transition(current.id, ['queued', 'in_progress'], { status: 'cancelled' });
    if (cancelled === undefined) {
      const now = (await r.store.get(current.id)) ?? current;
      if (now.status === 'cancelled') return toResponseObject(now);
      throw new SwitchyardError(ErrorCode.InvalidRequest, `Cannot cancel a response with status '${now.status}'.`, { param: 'response_id' });
    }
    await r.jobs?.cancel(current.id);
    return toResponseObject(cancelled);
  });
  app.delete('/v1/responses/:id', { preHandler }, async (request) => {
    const current = await owned(r.store, request);
    await r.jobs?.cancel(current.id);
    await r.store.delete(current.id);
    if (current.streamed) await r.events?.drop(current.id);
    return { id: current.id, object: 'response.deleted', deleted: true };
  });
}

/**
 * Relays the client's call, as it came (its API key authenticates it there), to the gateway of
 * the region its response id names: the response is hot in that region's Redis. Resolves the
 * reply once sent; undefined to serve it here (this region's, or that region is unreachable: an
 * archived response is in Postgres, which every region reads).
 */
async function inItsRegion(deps: GatewayDeps, r: ResponsesDeps, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
  const region = regionOfResponseId((request.params as { id: string }).id);
  const peer = region === undefined || region === deps.region.id ? undefined : r.peers?.peer(region);
  if (peer === undefined || r.peers === undefined) return undefined;
  const closed = new AbortController();
  reply.raw.once('close', () => closed.abort());
  const headers: Record<string, string> = { 'x-request-id': request.id, accept: request.headers.accept ?? 'application/json' };
  if (request.headers.authorization !== undefined) headers['authorization'] = request.headers.authorization;
  let res;
  try {
    res = await r.peers.relay(peer, request.method as 'GET' | 'POST' | 'DELETE', request.url, headers, closed.signal);
  } catch (err) {
    request.log.warn({ reqId: request.id, region, err: (err as Error).message }, "the response's region is unreachable; looking here");
    return undefined;
  }
  reply.code(res.statusCode).header('x-switchyard-region', region);
  for (const name of ['content-type', 'retry-after', 'cache-control']) {
    const v = res.headers[name];
    if (typeof v === 'string') reply.header(name, v);
  }
  return reply.send(res.body);
}

/** The tenant a response belongs to: the key's, or the origin's for a request another region forwarded. */
function tenantOf(request: FastifyRequest): string {
  return request.call?.key?.tenantId ?? request.call?.forwarded?.tenant ?? '';
}

async function owned(store: ResponseStore, request: FastifyRequest): Promise<StoredResponse> {
  const id = (request.params as { id: string }).id;
  const found = await store.get(id);
  if (found === undefined || found.tenant !== tenantOf(request)) {
    throw new SwitchyardError(ErrorCode.NotFound, `Response with id '${id}' not found.`, { param: 'response_id' });
  }
  return found;
}

async function create(deps: GatewayDeps, r: ResponsesDeps, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const call = request.call as CallContext;
  const body = parseResponsesRequest(request.body);
  call.model = body.model;
  if (!deps.fleet.knowsModel(deps.region.id, body.model)) {
    throw new SwitchyardError(ErrorCode.ModelNotFound, `The model \`${body.model}\` does not exist.`, { param: 'model' });
  }
  if (call.key !== undefined && !call.key.models.includes('*') && !call.key.models.includes(body.model)) {
    throw new SwitchyardError(ErrorCode.PermissionDenied, `This API key may not use the model \`${body.model}\`.`, { param: 'model' });
  }
  if (body.background && r.jobs === undefined) {
    throw new SwitchyardError(
      ErrorCode.InvalidRequest,
      'Background responses need Redis: start the gateway and `switchyard worker` with REDIS_URL set (their jobs are BullMQ queues in Redis), or use `switchyard start`, which runs them in-process.',
      { param: 'background' },
    );
  }
  const noWorker = body.background ? r.jobs?.unavailable(Date.now()) : undefined;
  if (noWorker !== undefined) throw new SwitchyardError(ErrorCode.NoWorker, noWorker, { param: 'background', retryAfterSeconds: 30 });
  let conversationId: string | undefined;
  let promptCacheKey = body.promptCacheKey;
  if (body.previousResponseId !== null) {
    const previous = await r.store.get(body.previousResponseId);
    if (previous === undefined || previous.tenant !== tenantOf(request)) {
      throw new SwitchyardError(ErrorCode.NotFound, `Previous response with id '${body.previousResponseId}' not found.`, { param: 'previous_response_id' });
    }
    conversationId = previous.conversationId;
    promptCacheKey ??= previous.promptCacheKey;
  }
  const id = newResponseId(deps.region.id);
  const record: StoredResponse = {
    id,
    conversationId: conversationId ?? id,
    createdAt: Math.floor(Date.now() / 1000),
    status: body.background ? 'queued' : 'in_progress',
    model: body.model,
    instructions: body.instructions,
    input: body.input,
    previousResponseId: body.previousResponseId,
    outputText: null,
    messageId: newMessageId(),
    usage: null,
    error: null,
    incompleteReason: null,
    background: body.background,
    streamed: body.background && body.stream,
    store: body.store,
    metadata: body.metadata,
    promptCacheKey,
    params: body.params,
    tenant: tenantOf(request),
    // Background work ranks below interactive traffic unless the key is a batch key already.
    priority: body.background ? 'batch' : (call.key?.priority ?? 'standard'),
    nodeId: null,
  };
  const estimate = deps.costs.estimate(body.model, request.rawBody?.length ?? 0, (body.params['max_tokens'] as number | undefined) ?? undefined);
  const admission = deps.accounting.admit(reply, call, estimate.tokens);
  if (admission !== undefined) await admission;

  if (body.background) {
    await r.store.put(record);
    if (record.streamed) {
      // The log starts before the job exists, so a follower never waits on an empty one.
      const sink = new LoggedEventSink(r.events as EventLog, id, 0);
      new ResponseEventWriter(sink).queued(toResponseObject(record));
      await sink.flush();
    }
    await (r.jobs as JobQueue).enqueue(id);
    return record.streamed ? followLog(deps, r, record, request, reply, -1) : toResponseObject(record);
  }
  const abort = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) abort.abort();
  });
  const route = deps.fleet.routeFrom(deps.region.id);
  // Spill by forwarding, as for chat completions: the neighbour runs (and keeps) the response.
  if (deps.peers !== undefined && call.forwarded === undefined) {
    const raw = request.rawBody ?? Buffer.from(JSON.stringify(request.body));
    const spilled = await trySpill(deps, {
      path: '/v1/responses', request, reply, call, model: body.model, route, stream: body.stream, clientWantsUsage: true, body: raw,
      costTokens: estimate.tokens, workTokens: estimate.work, priority: record.priority, deadlineAt: Date.now() + deps.settings.queueDeadlineStandardMs,
      affinityKey: promptCacheKey ?? `conversation:${record.conversationId}`, signal: abort.signal,
    });
    if (spilled) return reply;
  }
  if (body.store) await r.store.put(record);
  if (body.stream) return stream(deps, r, record, request, reply, abort, route);
  let result: RunResult;
  try {
    result = await r.runner.complete(record, route, request.id, abort.signal);
  } catch (error) {
    await fail(r, record, error);
    throw error;
  }
  call.nodeId = result.nodeId;
  call.usage = result.usage;
  reply.header('x-switchyard-node', result.nodeId);
  return toResponseObject(await finish(r, record, result));
}

async function finish(r: ResponsesDeps, record: StoredResponse, result: RunResult): Promise<StoredResponse> {
  const patch: Partial<StoredResponse> = {
    status: result.finishReason === 'length' ? 'incomplete' : 'completed',
    incompleteReason: result.finishReason === 'length' ? 'max_output_tokens' : null,
    outputText: result.text,
    usage: result.usage === undefined ? null : { input_tokens: result.usage.prompt_tokens, output_tokens: result.usage.completion_tokens },
    nodeId: result.nodeId,
  };
  if (!record.store) return { ...record, ...patch };
  return (await r.store.transition(record.id, ['in_progress'], patch)) ?? { ...record, ...patch };
}

async function fail(r: ResponsesDeps, record: StoredResponse, error: unknown): Promise<StoredResponse> {
  const err = error instanceof SwitchyardError ? error : undefined;
  const patch: Partial<StoredResponse> = { status: 'failed', error: { code: err?.code ?? 'server_error', message: (error as Error).message } };
  if (!record.store) return { ...record, ...patch };
  return (await r.store.transition(record.id, ['in_progress'], patch).catch(() => undefined)) ?? { ...record, ...patch };
}

async function stream(
  deps: GatewayDeps,
  r: ResponsesDeps,
  record: StoredResponse,
  request: FastifyRequest,
  reply: FastifyReply,
  abort: AbortController,
  route: ReturnType<GatewayDeps['fleet']['routeFrom']>,
): Promise<void> {
  const call = request.call as CallContext;
  let events: ResponseEventWriter | undefined;
  let status = 200;
  try {
    const result = await r.runner.stream(
      record,
      route,
      request.id,
      abort.signal,
      (nodeId) => {
        // Capacity granted and the engine answered: from here on the answer is a stream.
        openEventStream(reply, { 'x-switchyard-node': nodeId });
        events = new ResponseEventWriter(toClient(reply.raw));
        events.started(toResponseObject(record));
        events.textStarted(record.messageId);
      },
      (text) => {
        if (call.ttftMs === undefined) call.ttftMs = reply.elapsedTime;
        events?.delta(record.messageId, text);
      },
    );
    call.nodeId = result.nodeId;
    call.usage = result.usage;
    const final = await finish(r, record, result);
    events?.textDone(record.messageId, result.text);
    events?.finished(toResponseObject(final));
  } catch (error) {
    const failed = await fail(r, record, error);
    if (events === undefined) throw error; // nothing sent yet: a normal error response
    const err = error instanceof SwitchyardError ? error : new SwitchyardError(ErrorCode.UpstreamError, 'The response failed mid-stream.');
    status = abort.signal.aborted ? 499 : 502;
    call.errorCode = abort.signal.aborted ? 'client_closed' : err.code;
    if (!abort.signal.aborted) events.failed(toResponseObject(failed), err.code, err.message);
  }
  reply.raw.end();
  // Hijacked replies skip Fastify's onResponse hook: account for them here.
  deps.recordResponse('/v1/responses', status, reply.elapsedTime, call);
  deps.accounting.finish(request, status, reply.elapsedTime);
}

/**
 * Streams a background response from its event log: the events after `startingAfter`, then new
 * ones as the worker writes them, until the response ends (or is cancelled or deleted) or the
 * client goes away. Closing this stream leaves the response running; it can be resumed.
 */
async function followLog(deps: GatewayDeps, r: ResponsesDeps, record: StoredResponse, request: FastifyRequest, reply: FastifyReply, startingAfter: number): Promise<void> {
  const closed = new AbortController();
  reply.raw.once('close', () => closed.abort());
  // The client may have left during the awaits before this point ('close' already fired).
  if (reply.raw.destroyed || reply.raw.socket?.destroyed === true) closed.abort();
  openEventStream(reply);
  let lastSequence = startingAfter;
  let settledChecks = 0;
  const end = await (r.events as EventLog).follow(record.id, {
    startingAfter,
    signal: closed.signal,
    onEvent: (e) => {
      lastSequence = e.sequence;
      reply.raw.write(e.frame);
    },
    // Cancelled or deleted: nothing more will come. Finished: its last events follow the status
    // change within moments; a few quiet checks later (a worker that died in between) stop.
    isSettled: async () => {
      const now = await r.store.get(record.id);
      if (now === undefined || now.status === 'cancelled') return true;
      return TERMINAL_STATUSES.includes(now.status) && ++settledChecks >= 3;
    },
  }).catch((error: unknown) => {
    request.log.warn({ err: (error as Error).message, responseId: record.id }, 'following a response\'s events failed');
    return 'failed' as const;
  });
  const interrupted = {
    restarted: 'The worker running this response was replaced and the response started over; retrieve it when it completes.',
    released: `The gateway is shutting down; resume with GET /v1/responses/${record.id}?stream=true&starting_after=${lastSequence}.`,
    failed: "The response's events could not be read; retrieve it when it completes.",
  } as const;
  if (end === 'restarted' || end === 'released' || end === 'failed') {
    const message = interrupted[end];
    const sequence = lastSequence + 1;
    reply.raw.write(`event: error\ndata: ${JSON.stringify({ type: 'error', sequence_number: sequence, code: 'stream_interrupted', message, param: null })}\n\n`);
  }
  reply.raw.end();
  deps.recordResponse(request.routeOptions.url ?? '/v1/responses', 200, reply.elapsedTime, request.call);
  deps.accounting.finish(request, 200, reply.elapsedTime);
}
