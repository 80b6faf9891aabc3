import type { FastifyRequest } from 'fastify';
import type { ApiKeyRecord } from '../core/storage/key-store.js';
import type { Usage } from './upstream/sse.js';

/**
 * A request another region's gateway forwarded here (authenticated with the region token): the
 * origin admitted it against the key's limits and writes its usage record; this region serves it.
 */
export interface ForwardedFrom {
  readonly region: string;
  readonly tenant: string;
  readonly weight: number;
  readonly keyId: string | undefined;
}

/** What the gateway learns about one /v1 request on its way through; read when it ends. */
export interface CallContext {
  key: ApiKeyRecord | undefined;
  /** Set when another region forwarded the request: never forwarded again, not charged here. */
  forwarded: ForwardedFrom | undefined;
  /** The region that served it, when another region's gateway did (this one forwarded it). */
  servedByRegion: string | undefined;
  /** Times its stream was continued on another node after its node failed mid-generation. */
  failovers: number;
  model: string | undefined;
  nodeId: string | undefined;
  usage: Usage | undefined;
  ttftMs: number | undefined;
  errorCode: string | undefined;
  /** Rate-limit lease and the tokens reserved with it, settled when the request ends. */
  leaseId: string | undefined;
  reservedTokens: number;
  finished: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The body exactly as the client sent it; forwarded unchanged when nothing needs rewriting. */
    rawBody: Buffer | undefined;
    /** Set for accounted routes (/v1/*) by the auth hook. */
    call: CallContext | undefined;
  }
}

export function newCallContext(key: ApiKeyRecord | undefined, forwarded?: ForwardedFrom): CallContext {
  return {
    key,
    forwarded,
    servedByRegion: undefined,
    failovers: 0,
    model: undefined,
    nodeId: undefined,
    usage: undefined,
    ttftMs: undefined,
    errorCode: undefined,
    leaseId: undefined,
    reservedTokens: 0,
    finished: false,
  };
}

export function rawBodyOf(request: FastifyRequest): Buffer {
  return request.rawBody ?? Buffer.alloc(0);
}
