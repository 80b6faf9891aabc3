import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../core/errors.js';
import type { KeyCache } from '../auth/key-cache.js';
import type { ApiKeyRecord } from '../../core/storage/key-store.js';
import { newCallContext } from '../request-context.js';

/** Headers only another region's gateway may set (with the region token); stripped from anyone else. */
const INTERNAL_HEADERS = ['x-switchyard-forwarded-from', 'x-switchyard-tenant', 'x-switchyard-tenant-weight', 'x-switchyard-key-id'] as const;

/**
 * The one onRequest hook (hooks cost on every request, so there is only one): sets
 * `x-request-id` on every response and, on `/v1/*`, authenticates. With `auth: keys` a valid API
 * key is required (`Authorization: Bearer sk-…`) and rides along on `request.call`; with
 * `auth: none` every request passes without a key. A cached key is resolved synchronously.
 * Errors name neither the key nor its hash.
 *
 * A request forwarded by another region's gateway carries `x-switchyard-forwarded-from` and the
 * region token as its bearer: it is served for the origin's tenant and never charged here. The
 * same headers from anyone else are dropped, so a client cannot pose as a forwarded request.
 */
export function requestStart(app: FastifyInstance, mode: 'none' | 'keys', keys: KeyCache | undefined, regionToken?: string): void {
  app.decorateRequest('call', undefined);
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    if (!request.url.startsWith('/v1/')) return done();
    const from = request.headers['x-switchyard-forwarded-from'];
    if (from !== undefined) {
      if (typeof from === 'string' && regionToken !== undefined && sameSecret(bearer(request), regionToken)) {
        request.call = newCallContext(undefined, {
          region: from,
          tenant: headerOf(request, 'x-switchyard-tenant') ?? '',
          weight: Number(headerOf(request, 'x-switchyard-tenant-weight') ?? 1) || 1,
          keyId: headerOf(request, 'x-switchyard-key-id'),
        });
        return done();
      }
      for (const name of INTERNAL_HEADERS) delete request.headers[name];
    }
    if (mode === 'none' || keys === undefined) {
      request.call = newCallContext(undefined);
      return done();
    }
    const secret = bearer(request);
    if (secret === undefined) {
      request.call = newCallContext(undefined);
      return done(new SwitchyardError(ErrorCode.InvalidApiKey, 'You must provide an API key: Authorization: Bearer <key>.'));
    }
    const cached = keys.cached(secret);
    if (cached !== undefined) return admitKey(request, cached.record, done);
    keys.resolve(secret).then((key) => admitKey(request, key, done), done);
  });
}

function admitKey(request: FastifyRequest, key: ApiKeyRecord | undefined, done: (err?: Error) => void): void {
  request.call = newCallContext(key);
  done(key === undefined ? new SwitchyardError(ErrorCode.InvalidApiKey, 'Incorrect API key provided.') : undefined);
}

/** Constant time over equal-length digests, so neither the length nor a prefix leaks. */
export function sameSecret(given: string | undefined, secret: string): boolean {
  const a = createHash('sha256').update(given ?? '').digest();
  const b = createHash('sha256').update(secret).digest();
  return given !== undefined && timingSafeEqual(a, b);
}

/** `/internal/v1/*`: the region token shared by every region's gateways. */
export function regionAuth(request: FastifyRequest, token: string): void {
  if (!sameSecret(bearer(request), token)) {
    throw new SwitchyardError(ErrorCode.InvalidApiKey, 'A valid region token is required: Authorization: Bearer $SWITCHYARD_REGION_TOKEN.', {
      type: 'authentication_error',
    });
  }
}

/** `/admin/v1/*`: the admin token, compared in constant time. */
export function adminAuth(request: FastifyRequest, token: string): void {
  if (!sameSecret(bearer(request), token)) {
    throw new SwitchyardError(ErrorCode.InvalidApiKey, 'A valid admin token is required: Authorization: Bearer $SWITCHYARD_ADMIN_TOKEN.', {
      type: 'authentication_error',
    });
  }
}

function headerOf(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}
