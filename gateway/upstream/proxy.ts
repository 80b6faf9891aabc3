import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { ErrorCode, SwitchyardError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { RegionRoute } from '../../scheduler/fleet.js';
import type { NodeState } from '../../scheduler/node-state.js';
import type { PriorityClass } from '../../scheduler/admission/fair-queue.js';
import type { CapacityGate } from '../capacity/capacity-gate.js';
import type { GatewayMetrics } from '../gateway-metrics.js';
import { backoffDelayMs, retryAfterMs } from './backoff.js';
import { RequestCancel, sleepUnlessCancelled, undiciSignal, type CancelSignal } from './cancel-signal.js';
import type { NodeHealth } from './node-health.js';
import { normaliseUpstreamError } from './normalise-error.js';
import type { UpstreamPools } from './upstream-pools.js';
import { requestWhole, ResponseCutError, type WholeResponse } from './whole-request.js';

export interface ProxySettings {
  readonly retryAttempts: number;
  readonly retryBudgetMs: number;
  readonly retryBaseMs: number;
  readonly firstByteTimeoutMs: number;
  readonly idleTimeoutMs: number;
}

export interface ProxyCall {
  /** Path below the node's base URL, e.g. `/v1/chat/completions`. */
  readonly path: string;
  readonly model: string;
  /** Estimated tokens, prompt plus output: the fair-share charge. */
  readonly costTokens: number;
  /** Estimated load on a node (output + a tenth of the prompt): what placement and the ledger charge. */
  readonly workTokens: number;
  readonly body: Buffer | string;
  readonly requestId: string;
  readonly route: readonly RegionRoute[];
  /** Aborted when the client goes away: stops retries and the upstream request. */
  readonly signal: CancelSignal;
  /** Admission: queue order, fair share and how long the request may wait for capacity. */
  readonly priority: PriorityClass;
  readonly tenant: string;
  readonly weight: number;
  readonly deadlineAt: number;
  readonly affinityKey: string | undefined;
  /**
   * The key's rate-limit admission, running alongside: capacity is reserved meanwhile, and the
   * request goes upstream only once it resolves (a refusal releases the reservation and is thrown).
   */
  readonly admitted?: Promise<void> | undefined;
  /** Nodes not to use (a stream continued elsewhere after its node failed). */
  readonly exclude?: ReadonlySet<NodeState> | undefined;
}

type StreamedBody = Dispatcher.ResponseData['body'];

/**
 * A 2xx upstream response: its body still to be read (a stream, from `open`), or read whole (a
 * Buffer, from `openWhole`). Call `release` exactly once.
 */
export interface OpenUpstream<B = StreamedBody> {
  readonly node: NodeState;
  readonly statusCode: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: B;
  readonly attempts: number;
  /** Time spent waiting for capacity in the admission queue, ms. */
  readonly queuedMs: number;
  release(): void;
}

const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

type Failure =
  | { readonly kind: 'network'; readonly reason: string; readonly error: unknown }
  | { readonly kind: 'status'; readonly reason: string; readonly status: number; readonly body: string; readonly retryAfterMs: number | undefined }
  /** The answer started and was then cut: nothing to retry (the engine did the work), a 502. */
  | { readonly kind: 'cut'; readonly reason: 'dropped'; readonly error: unknown };

/** What an attempt may end with and the loop goes on from (a cut answer ends it at once). */
type AttemptFailure = Exclude<Failure, { readonly kind: 'cut' }>;

/** How one attempt sends the request and reads the answer: streamed or whole. */
type Send<B> = (node: NodeState, call: ProxyCall, signal: CancelSignal) => Promise<{ statusCode: number; headers: IncomingHttpHeaders; body: B } | Failure>;

/**
 * Sends one request to the fleet: takes capacity on a node through the admission gate (which may
 * queue it), and before the first byte retries failures
 * (connect refused or reset, timeouts, 429, 502-504) on another node, with exponential backoff and
 * full jitter, honouring `retry-after`, within the attempt count and the time budget. Other upstream
 * answers (400, 404, 422…) are the client's and are returned normalised, without retry.
 */
export class UpstreamProxy {
  constructor(
    private readonly gate: CapacityGate,
    private readonly pools: UpstreamPools,
    private readonly health: NodeHealth,
    private readonly metrics: GatewayMetrics,
    private readonly settings: ProxySettings,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** The answer as a stream (streams, and callers that read as it comes). */
  open(call: ProxyCall): Promise<OpenUpstream> {
    return this.openWith(call, this.sendStreamed);
  }

  /**
   * The answer read whole before this resolves (buffered responses): undici's dispatch with our own
   * handler, cheaper than `request` and a body stream. A connection cut mid-answer is a 502
   * `upstream_error`, not retried, as it would be once a stream had started.
   */
  openWhole(call: ProxyCall): Promise<OpenUpstream<Buffer>> {
    return this.openWith(call, this.sendWhole);
  }

  private async openWith<B>(call: ProxyCall, send: Send<B>): Promise<OpenUpstream<B>> {
    const admitted = call.admitted;
    if (admitted === undefined) return this.openAdmitted(call, call.signal, undefined, send);
    // A refusal must not wait for capacity first: it aborts the reservation (queued or not).
    const signal = RequestCancel.linkedTo(call.signal);
    const limits = admitted.then(
      () => undefined,
      (error: unknown) => {
        signal.abort();
        throw error;
      },
    );
    const opened = this.openAdmitted(call, signal, limits, send).catch(async (error: unknown) => {
      // The limiter's refusal, not the abort it caused, is what the client hears.
      await limits;
      throw error;
    });
    try {
      await limits;
    } catch (error) {
      // Settle the reservation side (it sees the abort, or the refusal, and releases) before answering.
      await opened.catch(() => undefined);
      throw error;
    }
    return opened;
  }

  /** `signal` and `admitted` replace the call's own (no copy of the call per request). */
  private async openAdmitted<B>(call: ProxyCall, signal: CancelSignal, admitted: Promise<void> | undefined, send: Send<B>): Promise<OpenUpstream<B>> {
    const started = this.now();
    const deadline = started + this.settings.retryBudgetMs;
    let tried: Set<NodeState> | undefined = call.exclude === undefined ? undefined : new Set(call.exclude);
    let last: AttemptFailure | undefined;
    let queuedMs = 0;
    for (let attempt = 0; attempt < this.settings.retryAttempts; attempt++) {
      let grant;
      try {
        grant = await this.gate.acquire({
          model: call.model,
          route: call.route,
          costTokens: call.costTokens,
          workTokens: call.workTokens,
          exclude: tried,
          priority: call.priority,
          tenant: call.tenant,
          weight: call.weight,
          deadlineAt: call.deadlineAt,
          affinityKey: call.affinityKey,
          signal,
        });
      } catch (error) {
        // Every remaining node failed already: report the last failure, not "no healthy node".
        if (last !== undefined && error instanceof SwitchyardError && error.code === ErrorCode.NoHealthyNode) break;
        throw error;
      }
      queuedMs += grant.waitedMs;
      const node = grant.node;
      const release = grant.release;
      if (attempt === 0 && admitted !== undefined) {
        try {
          await admitted;
        } catch (error) {
          release();
          throw error;
        }
      }
      const result = await send(node, call, signal);
      if ('statusCode' in result) {
        this.health.recordSuccess(node);
        return { node, statusCode: result.statusCode, headers: result.headers, body: result.body, attempts: attempt + 1, queuedMs, release };
      }
      release();
      if (result.kind === 'cut') {
        this.metrics.upstreamErrors.inc({ node: node.id, reason: result.reason });
        throw new SwitchyardError(ErrorCode.UpstreamError, 'The model server connection was lost before the response was complete.', { cause: result.error });
      }
      if (signal.aborted) throw new SwitchyardError(ErrorCode.InvalidRequest, 'client closed the request', { status: 499 });
      last = result;
      this.metrics.upstreamErrors.inc({ node: node.id, reason: result.reason });
      if (result.kind === 'status' && !RETRYABLE_STATUS.has(result.status)) throw this.finalError(result, node);
      if (result.kind === 'network' || result.status >= 500) this.health.recordFailure(node, result.reason);
      this.log.warn({ reqId: call.requestId, nodeId: node.id, reason: result.reason, attempt }, 'upstream attempt failed');
      (tried ??= new Set()).add(node);
      if (attempt + 1 >= this.settings.retryAttempts) break;
      const wait = Math.max(
        backoffDelayMs(attempt, this.settings.retryBaseMs, 2000),
        result.kind === 'status' ? (result.retryAfterMs ?? 0) : 0,
      );
      if (this.now() + wait > deadline) break;
      this.metrics.retries.inc({ reason: result.reason });
      if (wait > 0) {
        try {
          await sleepUnlessCancelled(wait, signal);
        } catch {
          throw new SwitchyardError(ErrorCode.InvalidRequest, 'client closed the request', { status: 499 });
        }
      }
    }
    if (last === undefined) {
      throw new SwitchyardError(ErrorCode.NoHealthyNode, `No healthy node serves model '${call.model}' right now.`, {
        retryAfterSeconds: 1,
      });
    }
    throw this.finalError(last, undefined);
  }

  private readonly sendStreamed: Send<StreamedBody> = async (node, call, signal) => {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.pools.get(node).request(this.requestOptions(node, call, undiciSignal(signal)));
    } catch (error) {
      return { kind: 'network', reason: networkReason(error), error };
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return res;
    let body = '';
    try {
      body = await res.body.text();
    } catch {
      // the error body is informative only
    }
    return this.statusFailure(res.statusCode, res.headers, body);
  };

  private readonly sendWhole: Send<Buffer> = async (node, call, signal) => {
    let res: WholeResponse;
    try {
      // requestWhole takes the cancel signal itself (no listener for undici to add).
      res = await requestWhole(this.pools.get(node), this.requestOptions(node, call, undefined), signal);
    } catch (error) {
      if (error instanceof ResponseCutError) return { kind: 'cut', reason: 'dropped', error: error.cause };
      return { kind: 'network', reason: networkReason(error), error };
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return res;
    return this.statusFailure(res.statusCode, res.headers, res.body.toString('utf8'));
  };

  /** The upstream request of one attempt, for either way of reading the answer. */
  private requestOptions(node: NodeState, call: ProxyCall, signal: AbortSignal | undefined): Dispatcher.RequestOptions {
    return {
      path: node.spec.pathPrefix + call.path,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': call.requestId, ...node.spec.headers },
      body: call.body,
      signal,
      headersTimeout: this.settings.firstByteTimeoutMs,
      bodyTimeout: this.settings.idleTimeoutMs,
    };
  }

  private statusFailure(status: number, headers: IncomingHttpHeaders, body: string): Failure {
    const reason = status === 429 ? 'http_429' : status >= 500 ? 'http_5xx' : `http_4xx`;
    return { kind: 'status', reason, status, body, retryAfterMs: retryAfterMs(headers, this.now()) };
  }

  private finalError(failure: AttemptFailure, node: NodeState | undefined): SwitchyardError {
    if (failure.kind === 'network') {
      if (failure.reason === 'first_byte_timeout' || failure.reason === 'connect_timeout') {
        return new SwitchyardError(ErrorCode.UpstreamTimeout, 'No model server answered in time.', { cause: failure.error });
      }
      return new SwitchyardError(ErrorCode.UpstreamUnavailable, 'No model server could be reached; retry later.', {
        retryAfterSeconds: 1,
        cause: failure.error,
      });
    }
    const engine = node?.spec.engine ?? 'openai';
    const { error, detail } = normaliseUpstreamError(failure.status, failure.body, engine);
    if (failure.status >= 500) this.log.warn({ nodeId: node?.id, status: failure.status, detail }, 'upstream error');
    if (RETRYABLE_STATUS.has(failure.status)) {
      const retryAfterSeconds = Math.max(1, Math.ceil((failure.retryAfterMs ?? 1000) / 1000));
      return new SwitchyardError(error.code, error.message, { status: error.status, type: error.type, retryAfterSeconds });
    }
    return error;
  }
}

/** undici and socket error codes to a bounded set of metric reasons. */
export function networkReason(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connect_refused';
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return 'connect_timeout';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'first_byte_timeout';
    case 'UND_ERR_BODY_TIMEOUT':
      return 'idle_timeout';
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
    case 'UND_ERR_CLOSED':
      return 'reset';
    case 'UND_ERR_ABORTED':
    case 'ABORT_ERR':
      return 'aborted';
    default:
      return (error as { name?: unknown }).name === 'AbortError' ? 'aborted' : 'error';
  }
}
