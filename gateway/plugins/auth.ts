import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../core/errors.js';
import type { KeyCache } from '../auth/key-cache.js';
import type { ApiKeyRecord } from '../../core/storage/key-store.js';
import { newCallContext } from '../request-context.js';

/**
 * The one onRequest hook (hooks cost on every request, so there is only one): sets
 * `x-request-id` on every response and, on `/v1/*`, authenticates. With `auth: keys` a valid API
 * key is required (`Authorization: Bearer sk-…`) and rides along on `request.call`; with
 * `auth: none` every request passes without a key. A cached key is resolved synchronously.
 * Errors name neither the key nor its hash.
 */
export function requestStart(app: FastifyInstance, mode: 'none' | 'keys', keys: KeyCache | undefined): void {
  app.decorateRequest('call', undefined);
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    if (!request.url.startsWith('/v1/')) return done();
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

/** `/admin/v1/*`: the admin token, compared in constant time. */
export function adminAuth(request: FastifyRequest, token: string): void {
  const given = bearer(request);
  const a = createHash('sha256').update(given ?? '').digest();
  const b = createHash('sha256').update(token).digest();
  if (given === undefined || !timingSafeEqual(a, b)) {
    throw new SwitchyardError(ErrorCode.InvalidApiKey, 'A valid admin token is required: Authorization: Bearer $SWITCHYARD_ADMIN_TOKEN.', {
      type: 'authentication_error',
    });
  }
}

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}
