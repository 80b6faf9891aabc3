import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import type { PriorityClass } from '../../../scheduler/admission/fair-queue.js';
import type { RegionRoute } from '../../../scheduler/fleet.js';
import type { GatewayDeps } from '../../gateway-deps.js';
import type { SpillChoice } from '../../regions/region-peers.js';
import type { CallContext } from '../../request-context.js';
import type { CancelSignal } from '../../upstream/cancel-signal.js';
import { extractUsage } from '../../upstream/sse.js';
import { relaySse } from '../../upstream/stream-relay.js';
import { openEventStream } from './event-stream.js';

/** One inference request as the handler has prepared it: admitted, priced, body ready. */
export interface SpillCandidate {
  readonly path: string;
  readonly request: FastifyRequest;
  readonly reply: FastifyReply;
  readonly call: CallContext;
  readonly model: string;
  /** The routes this gateway places on directly (its own region first). */
  readonly route: readonly RegionRoute[];
  readonly stream: boolean;
  readonly clientWantsUsage: boolean;
  /** The body as the engine would get it (streams ask for usage, so the origin can count tokens). */
  readonly body: Buffer | string;
  readonly costTokens: number;
  readonly workTokens: number;
  readonly priority: PriorityClass;
  readonly deadlineAt: number;
  readonly affinityKey: string | undefined;
  readonly signal: CancelSignal;
  /** `x-switchyard-region` named this standalone region: forward there, whatever the arithmetic says. */
  readonly onlyTo?: string | undefined;
}

/**
 * Spill by forwarding: when a standalone neighbour region is expected to finish the request
 * sooner than this one, distance included (or this region has no headroom and it does), the
 * request goes to that region's gateway, which admits it into its own ledger and queue and serves
 * it. The decision is arithmetic on the neighbours' summaries; the request leaves once. Limits
 * were charged here, and the usage record is written here, once. Resolves true when the
 * neighbour answered (the reply is sent); false to serve it here: no neighbour fits, it could
 * not be reached, or it was full after all.
 */
export async function trySpill(deps: GatewayDeps, c: SpillCandidate): Promise<boolean> {
  const peers = deps.peers;
  // A forwarded request is never forwarded again.
  if (peers === undefined || c.call.forwarded !== undefined) return false;
  const asked = c.onlyTo === undefined ? undefined : peers.peer(c.onlyTo);
  const choice = c.onlyTo !== undefined ? (asked === undefined ? undefined : { peer: asked, seconds: 0 }) : peers.choose(c.model, c.costTokens, localSeconds(deps, c));
  if (choice === undefined) return false;
  const res = await send(deps, c, choice);
  if (res === undefined) return false;
  const { peer } = choice;
  const node = headerOf(res, 'x-switchyard-node');
  const region = headerOf(res, 'x-switchyard-region') ?? peer.spec.region.id;
  c.call.nodeId = node;
  c.call.servedByRegion = region;
  peers.counted(peer, 'served');
  c.reply.header('x-switchyard-region', region);
  if (node !== undefined) c.reply.header('x-switchyard-node', node);
  const queued = headerOf(res, 'x-switchyard-queue-ms');
  if (queued !== undefined) c.reply.header('x-switchyard-queue-ms', queued);
  if (c.stream && res.statusCode === 200) {
    await relayForwarded(deps, c, res, region);
    return true;
  }
  const bytes = await res.body.bytes();
  const payload = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (res.statusCode < 400) c.call.usage = extractUsage(payload);
  else c.call.errorCode = errorCodeOf(payload);
  const retryAfter = headerOf(res, 'retry-after');
  if (retryAfter !== undefined) c.reply.header('retry-after', retryAfter);
  await c.reply
    .code(res.statusCode)
    .header('content-type', headerOf(res, 'content-type') ?? 'application/json')
    .send(payload);
  return true;
}

/** Seconds the request is expected to take here: Infinity when it would wait in the queue. */
function localSeconds(deps: GatewayDeps, c: SpillCandidate): number {
  const home = c.route[0];
  if (home === undefined || deps.waitingFor(c.model, home.region.id) > 0) return Infinity;
  const now = Date.now();
  const ranking = deps.policy.rank(
    { model: c.model, costTokens: c.costTokens, workTokens: c.workTokens, route: c.route, exclude: undefined, now, affinityKey: c.affinityKey },
    1,
  );
  const node = ranking.nodes[0];
  if (node === undefined) return Infinity;
  const rtt = c.route.find((hop) => hop.region.id === node.spec.regionId)?.rttMs ?? 0;
  return deps.policy.expectedSeconds(node, rtt, c.costTokens);
}

/** Forwards; undefined (and the neighbour counted saturated) when it cannot take the request. */
async function send(deps: GatewayDeps, c: SpillCandidate, choice: SpillChoice): Promise<Dispatcher.ResponseData | undefined> {
  const peers = deps.peers;
  if (peers === undefined) return undefined;
  let res: Dispatcher.ResponseData;
  try {
    res = await peers.forward(choice.peer, {
      path: c.path,
      body: c.body,
      requestId: c.request.id,
      originRegion: deps.region.id,
      tenant: c.call.key?.tenantId ?? '',
      weight: c.call.key?.tenantWeight ?? 1,
      keyId: c.call.key?.id,
      priority: c.priority,
      remainingMs: c.deadlineAt - Date.now(),
      affinityKey: c.affinityKey,
      signal: c.signal,
    });
  } catch (err) {
    if (c.signal.aborted) throw err;
    // Unreachable: local service continues, and no more spill there until a fresh summary.
    peers.markSaturated(choice.peer, (err as Error).message);
    peers.counted(choice.peer, 'unreachable');
    c.request.log.warn({ reqId: c.request.id, region: choice.peer.spec.region.id, err: (err as Error).message }, 'forwarding to a neighbour region failed; serving here');
    return undefined;
  }
  if (res.statusCode === 503) {
    // Full after all (its summary was a second old): this region queues the request instead.
    await res.body.dump();
    peers.markSaturated(choice.peer, 'answered 503');
    peers.counted(choice.peer, 'full');
    return undefined;
  }
  return res;
}

async function relayForwarded(deps: GatewayDeps, c: SpillCandidate, res: Dispatcher.ResponseData, region: string): Promise<void> {
  openEventStream(c.reply);
  const result = await relaySse(res.body, c.reply.raw, {
    clientWantsUsage: c.clientWantsUsage,
    onFirstEvent: () => {
      c.call.ttftMs = c.reply.elapsedTime;
      deps.metrics.observeTimeToFirstToken(c.model, region, c.call.ttftMs / 1000);
    },
  });
  c.call.usage = result.usage;
  if (result.failure !== undefined) c.call.errorCode = result.failure === 'client_closed' ? 'client_closed' : 'upstream_error';
  // Hijacked replies skip Fastify's onResponse hook: account for them here.
  const status = result.failure === undefined ? 200 : result.failure === 'client_closed' ? 499 : 502;
  deps.recordResponse(c.request.routeOptions.url ?? 'unknown', status, c.reply.elapsedTime, c.call);
  deps.accounting.finish(c.request, status, c.reply.elapsedTime);
}

function headerOf(res: Dispatcher.ResponseData, name: string): string | undefined {
  const v = res.headers[name];
  return typeof v === 'string' ? v : Array.isArray(v) ? v[0] : undefined;
}

function errorCodeOf(payload: Buffer): string {
  try {
    return (JSON.parse(payload.toString('utf8')) as { error?: { code?: string } }).error?.code ?? 'upstream_error';
  } catch {
    return 'upstream_error';
  }
}
