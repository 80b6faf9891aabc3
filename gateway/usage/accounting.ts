import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { LimiterUnavailableError, type AdmitResult, type LimitState, type RateLimiter } from '../../core/ratelimit/rate-limiter.js';
import type { UsageBuffer } from '../../core/storage/usage-buffer.js';
import type { ApiKeyRecord } from '../../core/storage/key-store.js';
import type { CallContext } from '../request-context.js';

export interface AccountingOptions {
  /** Absent when auth is off: without keys there is nobody to limit. */
  readonly limiter: RateLimiter | undefined;
  readonly buffer: UsageBuffer;
  readonly region: string;
  readonly log: Logger;
  readonly onRateLimited?: (reason: string) => void;
}

/** Usage record ids: unique across processes (random tag) and requests (counter). */
const USAGE_ID_TAG = `u_${randomBytes(6).toString('hex')}_`;
let usageCounter = 0;

/**
 * Per-key admission (token buckets and concurrency, one limiter round trip) and the end of every
 * /v1 request: settle the lease with the real token count, and hand a usage record to the buffer.
 * Nothing here writes to Postgres: the buffer is drained in batches by the usage flusher.
 */
export class RequestAccounting {
  constructor(private readonly opts: AccountingOptions) {}

  /** Undefined when there is nothing to check (no key): the hot path then awaits nothing. */
  admit(reply: FastifyReply, call: CallContext, costTokens: number): Promise<void> | undefined {
    const key = call.key;
    const limiter = this.opts.limiter;
    if (key === undefined || limiter === undefined) return undefined;
    return this.admitKey(reply, call, key, limiter, costTokens);
  }

  private async admitKey(reply: FastifyReply, call: CallContext, key: ApiKeyRecord, limiter: RateLimiter, costTokens: number): Promise<void> {
    let result: AdmitResult;
    try {
      result = await limiter.admit(key.id, key.limits, costTokens);
    } catch (err) {
      if (err instanceof LimiterUnavailableError) {
        throw new SwitchyardError(ErrorCode.UpstreamUnavailable, 'Rate limits cannot be checked right now; retry shortly.', {
          retryAfterSeconds: 1,
          cause: err,
        });
      }
      throw err;
    }
    setRateLimitHeaders(reply, result);
    if (!result.allowed) {
      const reason = result.reason ?? 'requests';
      this.opts.onRateLimited?.(reason);
      reply.header('retry-after-ms', String(Math.ceil(result.retryAfterMs)));
      throw new SwitchyardError(ErrorCode.RateLimited, rateLimitMessage(reason, result), {
        retryAfterSeconds: Math.max(1, Math.ceil(result.retryAfterMs / 1000)),
        type: reason === 'tokens' ? 'tokens' : 'requests',
      });
    }
    call.leaseId = result.leaseId;
    call.reservedTokens = costTokens;
  }

  /** Idempotent: called from onResponse, or by the stream relay for hijacked replies. */
  finish(request: FastifyRequest, status: number, elapsedMs: number): void {
    const call = request.call;
    if (call === undefined || call.finished) return;
    call.finished = true;
    const used = call.usage === undefined ? undefined : call.usage.prompt_tokens + call.usage.completion_tokens;
    if (call.leaseId !== undefined && call.key !== undefined && this.opts.limiter !== undefined) {
      // A request that failed before the engine counted anything keeps its prompt estimate charged.
      const actual = used ?? (status < 400 ? call.reservedTokens : 0);
      this.opts.limiter.settle(call.key.id, call.key.limits, call.leaseId, call.reservedTokens, actual).catch((err: unknown) => {
        this.opts.log.warn({ err }, 'rate limit settle failed');
      });
    }
    // Records of requests that never reached inference (models list) are not usage; a request
    // forwarded here by another region is recorded there, once.
    if ((call.model === undefined && call.errorCode === undefined) || call.forwarded !== undefined) return;
    this.opts.buffer.push({
      id: `${USAGE_ID_TAG}${(++usageCounter).toString(36)}`,
      requestId: request.id,
      tenantId: call.key?.tenantId ?? null,
      keyId: call.key?.id ?? null,
      model: call.model ?? '',
      region: this.opts.region,
      nodeId: call.nodeId ?? null,
      promptTokens: call.usage?.prompt_tokens ?? 0,
      completionTokens: call.usage?.completion_tokens ?? 0,
      ttftMs: call.ttftMs ?? null,
      durationMs: elapsedMs,
      status,
      errorCode: call.errorCode ?? null,
      createdAt: new Date(),
      failovers: call.failovers,
    });
  }
}

/** OpenAI's header names; reset values in its duration format (`120ms`, `1.5s`, `6m0s`). */
export function setRateLimitHeaders(reply: FastifyReply, s: LimitState): void {
  if (s.limitRequests > 0) {
    reply.header('x-ratelimit-limit-requests', String(s.limitRequests));
    reply.header('x-ratelimit-remaining-requests', String(Math.max(0, Math.floor(s.remainingRequests))));
    reply.header('x-ratelimit-reset-requests', formatDuration(s.resetRequestsMs));
  }
  if (s.limitTokens > 0) {
    reply.header('x-ratelimit-limit-tokens', String(s.limitTokens));
    reply.header('x-ratelimit-remaining-tokens', String(Math.max(0, Math.floor(s.remainingTokens))));
    reply.header('x-ratelimit-reset-tokens', formatDuration(s.resetTokensMs));
  }
}

export function formatDuration(ms: number): string {
  const v = Math.max(0, Math.ceil(ms));
  if (v < 1000) return `${v}ms`;
  if (v < 60_000) return `${Number((v / 1000).toFixed(3))}s`;
  const m = Math.floor(v / 60_000);
  return `${m}m${Number(((v - m * 60_000) / 1000).toFixed(3))}s`;
}

function rateLimitMessage(reason: string, r: AdmitResult): string {
  const wait = formatDuration(r.retryAfterMs);
  switch (reason) {
    case 'tokens':
      return `Rate limit reached on tokens per min (TPM): Limit ${r.limitTokens}, Remaining ${Math.max(0, Math.floor(r.remainingTokens))}. Please try again in ${wait}.`;
    case 'concurrency':
      return `Too many concurrent requests for this API key. Please try again in ${wait}.`;
    default:
      return `Rate limit reached on requests per min (RPM): Limit ${r.limitRequests}. Please try again in ${wait}.`;
  }
}
