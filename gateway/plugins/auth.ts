import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../core/errors.js';
import type { KeyCache } from '../auth/key-cache.js';
import { newCallContext } from '../request-context.js';

/**
 * `/v1/*`: with `auth: keys`, a valid API key is required (`Authorization: Bearer sk-…`); the key
 * rides along on `request.call`. With `auth: none` every request passes, without a key.
 * Errors name neither the key nor its hash.
 */
export function apiKeyAuth(app: FastifyInstance, mode: 'none' | 'keys', keys: KeyCache | undefined): void {
  app.decorateRequest('call', undefined);
  app.addHook('onRequest', async (request) => {
    if (!request.url.startsWith('/v1/')) return;
    if (mode === 'none' || keys === undefined) {
      request.call = newCallContext(undefined);
      return;
    }
    const secret = bearer(request);
    if (secret === undefined) {
      request.call = newCallContext(undefined);
      throw new SwitchyardError(ErrorCode.InvalidApiKey, 'You must provide an API key: Authorization: Bearer <key>.', { type: 'invalid_request_error' });
    }
    const key = await keys.resolve(secret);
    request.call = newCallContext(key);
    if (key === undefined) throw new SwitchyardError(ErrorCode.InvalidApiKey, 'Incorrect API key provided.');
  });
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
