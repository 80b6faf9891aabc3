import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../../core/errors.js';
import { PRIORITY_CLASSES, type PriorityClass } from '../../../scheduler/admission/fair-queue.js';
import type { RegionRoute } from '../../../scheduler/fleet.js';
import type { GatewayDeps } from '../../gateway-deps.js';
import { rawBodyOf, type CallContext } from '../../request-context.js';
import { RequestCancel } from '../../upstream/cancel-signal.js';
import type { OpenUpstream, ProxyCall } from '../../upstream/proxy.js';
import { endWithFailure, relaySse } from '../../upstream/stream-relay.js';
import { continuationBody, StreamLegs } from '../../upstream/stream-continuation.js';
import type { NodeState } from '../../../scheduler/node-state.js';
import { extractUsage, type Usage } from '../../upstream/sse.js';
import { ChatCompletionBody, CompletionBody, EmbeddingBody, type InferenceBody } from './schemas.js';
import { openEventStream } from './event-stream.js';
import { bodyAskingForUsage } from './stream-usage.js';
import { trySpill } from './spill.js';

const ROUTES = [
  { url: '/v1/chat/completions', schema: ChatCompletionBody, streams: true },
  { url: '/v1/completions', schema: CompletionBody, streams: true },
  { url: '/v1/embeddings', schema: EmbeddingBody, streams: false },
] as const;

/** The OpenAI inference routes: validate, place, forward, relay. */
export function inferenceRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  for (const route of ROUTES) {
    app.post(route.url, { schema: { body: route.schema } }, (request, reply) =>
      handle(deps, route.url, route.streams, request, reply),
    );
  }
}

async function handle(
  deps: GatewayDeps,
  path: string,
  canStream: boolean,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<void> {
  const body = request.body as InferenceBody;
  const call = request.call as CallContext; // set by the auth hook for every /v1 route
  call.model = body.model;
  const route = regionRoute(deps, request);
  // Asked for a standalone neighbour region: only its own gateways may serve from its nodes.
  const askedPeer = route[0] !== undefined && route[0].region.id !== deps.region.id && route[0].region.gateway !== undefined ? route[0].region.id : undefined;
  if (!deps.fleet.knowsModel(deps.region.id, body.model) && !(call.forwarded === undefined && deps.peers?.serves(body.model) === true)) {
    throw new SwitchyardError(ErrorCode.ModelNotFound, `The model \`${body.model}\` does not exist.`, { param: 'model' });
  }
  if (call.key !== undefined && !call.key.models.includes('*') && !call.key.models.includes(body.model)) {
    throw new SwitchyardError(ErrorCode.PermissionDenied, `This API key may not use the model \`${body.model}\`.`, { param: 'model' });
  }
  const stream = canStream && body.stream === true;
  const raw = rawBodyOf(request);
  // Prompt estimate without walking the messages (body bytes per token, learned per model from
  // the engines' usage) plus the output asked for, or the model's usual output.
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  const estimate = deps.costs.estimate(body.model, raw.length, maxTokens);
  const costTokens = estimate.tokens;
  const priority = priorityOf(request, call);
  const deadlineAt = Date.now() + queueTimeoutMs(deps, request, priority);
  const clientWantsUsage = body.stream_options?.include_usage === true;
  // The key's limits and the node's capacity are checked at once (one Redis round trip before
  // forwarding, not two): the proxy reserves capacity while the limiter answers, and sends
  // nothing upstream until both agree.
  const admission = deps.accounting.admit(reply, call, costTokens);
  // Streams always ask the engine for usage, so token counts are real; the trailer is dropped
  // again below when the client did not ask for it. Other bodies go upstream byte for byte.
  const upstreamBody = stream && !clientWantsUsage ? bodyAskingForUsage(raw, body) : raw;

  const cancel = new RequestCancel();
  const res = reply.raw;
  res.once('close', () => {
    if (!res.writableFinished) cancel.abort();
  });

  const affinityKey = affinityKeyOf(request, body);
  if (deps.peers !== undefined || askedPeer !== undefined) {
    // Spilling charges the limits here first: the neighbour trusts the origin's admission.
    if (admission !== undefined) await admission;
    const spilled = await trySpill(deps, {
      path, request, reply, call, model: body.model, route, stream, clientWantsUsage, body: upstreamBody, costTokens,
      workTokens: estimate.work, priority, deadlineAt, affinityKey, signal: cancel, onlyTo: askedPeer,
    });
    if (spilled) return;
    if (askedPeer !== undefined) {
      throw new SwitchyardError(ErrorCode.UpstreamUnavailable, `Region '${askedPeer}' cannot take the request now (unreachable, or no region token configured); retry, or ask for another region.`, {
        retryAfterSeconds: 1,
      });
    }
  }

  const openedAt = performance.now();
  const proxyCall: ProxyCall = {
    path,
    model: body.model,
    costTokens,
    workTokens: estimate.work,
    body: upstreamBody,
    requestId: request.id,
    route,
    signal: cancel,
    priority,
    // A request forwarded by another region queues for the origin's tenant.
    tenant: call.key?.tenantId ?? call.forwarded?.tenant ?? '',
    weight: call.key?.tenantWeight ?? call.forwarded?.weight ?? 1,
    deadlineAt,
    affinityKey,
    admitted: admission,
  };
  // A buffered answer is read whole by the proxy (no body stream); a stream is relayed as it comes.
  const upstream: OpenUpstream | OpenUpstream<Buffer> = stream ? await deps.proxy.open(proxyCall) : await deps.proxy.openWhole(proxyCall);
  call.nodeId = upstream.node.id;
  // Time in the gateway excludes waiting for capacity and for the engine (headers, then body).
  let upstreamMs = performance.now() - openedAt;
  try {
    reply.header('x-switchyard-node', upstream.node.id).header('x-switchyard-region', upstream.node.spec.regionId);
    if (upstream.queuedMs > 0) reply.header('x-switchyard-queue-ms', String(Math.round(upstream.queuedMs)));
    const bodyAt = performance.now();
    if (stream) {
      // Mid-stream failover: the stream may continue on another node after this one fails. Built
      // for streams only (a buffered answer has no legs), and the closure only when it may be used.
      const legs = failoverAllowed(deps, request) ? new StreamLegs(path === '/v1/chat/completions' ? 'chat' : 'completion') : undefined;
      const next = async (failed: OpenUpstream, tried: Set<NodeState>, text: string, tokens: number): Promise<OpenUpstream | undefined> => {
        const continued = continuationBody(path, body as unknown as Record<string, unknown>, text, tokens, failed.node.spec.engine);
        if (continued === undefined) return undefined;
        // The same call with the text so far, a fresh first-byte deadline, and the limits already charged.
        return deps.proxy.open({ ...proxyCall, body: continued, admitted: undefined, deadlineAt: Date.now() + deps.settings.firstByteTimeoutMs, exclude: tried });
      };
      await relay(deps, request, reply, upstream as OpenUpstream, call, clientWantsUsage, legs === undefined ? undefined : { legs, next });
    }
    else await respondBuffered(deps, reply, upstream as OpenUpstream<Buffer>, call);
    upstreamMs += performance.now() - bodyAt;
  } finally {
    upstream.release();
  }
  deps.metrics.observeOverhead(path, Math.max(0, reply.elapsedTime - upstreamMs) / 1000);
  if (call.usage !== undefined) {
    deps.costs.observe(body.model, raw.length, call.usage.prompt_tokens, call.usage.completion_tokens, maxTokens !== undefined && maxTokens !== null);
  }
}

async function respondBuffered(deps: GatewayDeps, reply: FastifyReply, upstream: OpenUpstream<Buffer>, call: CallContext): Promise<void> {
  // Read whole by the proxy already; a connection cut mid-answer was its 502.
  const payload = upstream.body;
  call.usage = extractUsage(payload);
  countTokens(deps, call.model ?? '', upstream, call.usage);
  await reply
    .code(upstream.statusCode)
    .header('content-type', upstream.headers['content-type'] ?? 'application/json')
    .send(payload);
}

/** The next leg of a stream whose node failed: another node, told to continue the text so far. */
type ContinueStream = (failed: OpenUpstream, tried: Set<NodeState>, text: string, tokens: number) => Promise<OpenUpstream | undefined>;

async function relay(
  deps: GatewayDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  first: OpenUpstream,
  call: CallContext,
  clientWantsUsage: boolean,
  failover: { legs: StreamLegs; next: ContinueStream } | undefined,
): Promise<void> {
  const model = call.model ?? '';
  openEventStream(reply);
  const res = reply.raw;
  let upstream = first;
  const tried = new Set<NodeState>();
  let result;
  for (;;) {
    // A node declared down ends this stream at once instead of leaving the client to the idle timeout.
    let nodeDown = false;
    const leg = upstream;
    const untrack = deps.streams.track(leg.node.id, () => {
      nodeDown = true;
      leg.body.destroy(new Error('node declared down'));
    });
    const legs = failover?.legs;
    result = await relaySse(leg.body, res, {
      clientWantsUsage,
      onFirstEvent: () => {
        call.ttftMs ??= reply.elapsedTime;
        if (leg === first) deps.metrics.observeTimeToFirstToken(model, leg.node.spec.regionId, call.ttftMs / 1000);
      },
      endedBy: () => (nodeDown ? 'node_down' : undefined),
      ...(legs === undefined ? {} : { onWritten: (e: Buffer) => legs.keep(e), keepOpenOnFailure: true, ...(leg === first ? {} : { rewrite: (e: Buffer) => legs.rewrite(e) }) }),
    }).finally(untrack);
    if (leg !== first) leg.release();
    const failure = result.failure;
    if (failure === undefined || failure === 'client_closed' || failover === undefined) break;
    deps.metrics.upstreamErrors.inc({ node: leg.node.id, reason: failure });
    // Continue elsewhere: at most SWITCHYARD_FAILOVER_MAX times, never on a node already tried.
    tried.add(leg.node);
    const cut = failover.legs.cut();
    const next =
      failover.legs.failovers < deps.settings.failoverMax && cut.continuable
        ? await failover.next(leg, tried, cut.text, cut.tokens).catch(() => undefined)
        : undefined;
    deps.metrics.failovers.inc({ reason: failure, result: next === undefined ? 'ended' : 'continued' });
    request.log.warn({ reqId: request.id, nodeId: leg.node.id, reason: failure, continuedOn: next?.node.id ?? null }, next === undefined ? 'stream ended early' : 'stream continued on another node');
    if (next === undefined) {
      if (!res.destroyed) endWithFailure(res, failure);
      break;
    }
    failover.legs.failovers++;
    call.nodeId = next.node.id;
    upstream = next;
  }
  const completion = result.usage?.completion_tokens ?? 0;
  if (result.failure === undefined && call.ttftMs !== undefined && completion > 1) {
    const perToken = (reply.elapsedTime - call.ttftMs) / (completion - 1);
    deps.metrics.observeTimePerOutputToken(model, upstream.node.spec.regionId, perToken / 1000);
  }
  if (result.failure !== undefined && result.failure !== 'client_closed' && failover === undefined) {
    deps.metrics.upstreamErrors.inc({ node: upstream.node.id, reason: result.failure });
    request.log.warn({ reqId: request.id, nodeId: upstream.node.id, reason: result.failure, events: result.events }, 'stream ended early');
  }
  call.usage = result.usage;
  call.failovers = failover?.legs.failovers ?? 0;
  if (result.failure !== undefined) call.errorCode = result.failure === 'client_closed' ? 'client_closed' : 'upstream_error';
  countTokens(deps, model, upstream, result.usage);
  // Hijacked replies skip Fastify's onResponse hook: account for them here.
  const status = result.failure === undefined ? 200 : result.failure === 'client_closed' ? 499 : 502;
  deps.recordResponse(request.routeOptions.url ?? 'unknown', status, reply.elapsedTime, call);
  deps.accounting.finish(request, status, reply.elapsedTime);
}

/** Failover is on unless the settings or the client turn it off (`x-switchyard-failover: off`). */
function failoverAllowed(deps: GatewayDeps, request: FastifyRequest): boolean {
  return deps.settings.failoverMax > 0 && request.headers['x-switchyard-failover'] !== 'off';
}

function countTokens(deps: GatewayDeps, model: string, upstream: OpenUpstream<unknown>, usage: Usage | undefined): void {
  if (usage === undefined) return;
  deps.metrics.countTokens(model, upstream.node, usage.prompt_tokens, usage.completion_tokens);
}

/** Regions this request may use: from the gateway's region or an allowed `x-switchyard-region`. */
function regionRoute(deps: GatewayDeps, request: FastifyRequest): readonly RegionRoute[] {
  const asked = request.headers['x-switchyard-region'];
  if (asked === undefined || asked === '') return deps.fleet.routeFrom(deps.region.id);
  const id = Array.isArray(asked) ? asked[0] ?? '' : asked;
  const region = deps.fleet.region(id);
  if (region === undefined) {
    throw new SwitchyardError(ErrorCode.InvalidRequest, `Unknown region '${id}' in x-switchyard-region.`, { param: 'x-switchyard-region' });
  }
  if (region.residency !== deps.region.residency) {
    throw new SwitchyardError(
      ErrorCode.RegionNotAllowed,
      `Region '${id}' is outside this gateway's residency group '${deps.region.residency}'.`,
      { param: 'x-switchyard-region' },
    );
  }
  return deps.fleet.routeFrom(region.id);
}

/**
 * The priority class: the key's, or a lower one asked for with `x-switchyard-priority` (a client
 * may step down, e.g. for batch work, never up). Without keys the header decides; default standard.
 */
function priorityOf(request: FastifyRequest, call: CallContext): PriorityClass {
  const allowed = call.key?.priority ?? 'interactive';
  const asked = request.headers['x-switchyard-priority'];
  if (asked === undefined || asked === '') return call.key?.priority ?? 'standard';
  const value = Array.isArray(asked) ? asked[0] ?? '' : asked;
  const index = PRIORITY_CLASSES.indexOf(value as PriorityClass);
  if (index < 0) {
    throw new SwitchyardError(ErrorCode.InvalidRequest, `x-switchyard-priority must be one of ${PRIORITY_CLASSES.join(', ')}.`, {
      param: 'x-switchyard-priority',
    });
  }
  return PRIORITY_CLASSES[Math.max(index, PRIORITY_CLASSES.indexOf(allowed))] as PriorityClass;
}

/** How long the request may wait for capacity: its class's deadline, or less if the client asks. */
function queueTimeoutMs(deps: GatewayDeps, request: FastifyRequest, priority: PriorityClass): number {
  const s = deps.settings;
  const limit = priority === 'interactive' ? s.queueDeadlineInteractiveMs : priority === 'batch' ? s.queueDeadlineBatchMs : s.queueDeadlineStandardMs;
  const asked = request.headers['x-switchyard-queue-timeout-ms'];
  if (asked === undefined || asked === '') return limit;
  const value = Number(Array.isArray(asked) ? asked[0] : asked);
  if (!Number.isInteger(value) || value < 0) {
    throw new SwitchyardError(ErrorCode.InvalidRequest, 'x-switchyard-queue-timeout-ms must be a whole number of milliseconds >= 0.', {
      param: 'x-switchyard-queue-timeout-ms',
    });
  }
  return Math.min(limit, value);
}

/** Session affinity key: `x-session-id`, else OpenAI's `prompt_cache_key`, else the `user` field. */
function affinityKeyOf(request: FastifyRequest, body: InferenceBody): string | undefined {
  const header = request.headers['x-session-id'];
  if (typeof header === 'string' && header !== '') return header;
  if (typeof body.prompt_cache_key === 'string' && body.prompt_cache_key !== '') return body.prompt_cache_key;
  return typeof body.user === 'string' && body.user !== '' ? body.user : undefined;
}
