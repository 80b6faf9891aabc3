import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { RedisRateLimiter } from '../../../core/ratelimit/redis-rate-limiter.js';
import type { KeyLimits } from '../../../core/ratelimit/rate-limiter.js';
import type { Slice } from '../../../core/ratelimit/redis-rate-limiter.js';
import { regionAuth } from '../../plugins/auth.js';
import type { RegionSummary } from '../../regions/region-summary.js';
import { ErrorCode, SwitchyardError } from '../../../core/errors.js';
import type { StoredResponse } from '../../../core/storage/response-store.js';

export interface InternalDeps {
  /** SWITCHYARD_REGION_TOKEN: every call here must carry it. */
  readonly token: string;
  /** This region's capacity summary, from the gateway's ledger view. */
  summary(): RegionSummary;
  /** A response this region holds (hot or archived), for a conversation continued elsewhere. */
  response(id: string): Promise<StoredResponse | undefined>;
  /** Present in the limits home region: the keys' authoritative buckets, leased to other regions. */
  readonly limits: RedisRateLimiter | undefined;
}

const SliceBody = Type.Object(
  {
    keyId: Type.String({ minLength: 1, maxLength: 200 }),
    limits: Type.Object({ requestsPerMinute: Type.Number({ minimum: 0 }), tokensPerMinute: Type.Number({ minimum: 0 }), maxConcurrent: Type.Number({ minimum: 0 }) }),
    slice: Type.Object({
      requests: Type.Integer({ minimum: 0 }),
      tokens: Type.Integer({ minimum: 0 }),
      // Wanted: a count; given back: the names granted.
      slots: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 100_000 }), Type.Array(Type.String({ maxLength: 200 }), { maxItems: 100_000 })])),
    }),
    /** The leasing region: a leased slot is named after it. */
    region: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);
const SlotsBody = Type.Object({ keyId: Type.String({ minLength: 1, maxLength: 200 }), slots: Type.Array(Type.String({ maxLength: 200 }), { maxItems: 100_000 }) }, { additionalProperties: false });
interface SliceCall {
  keyId: string;
  limits: KeyLimits;
  slice: Slice;
  region?: string;
}

/**
 * `/internal/v1`: what the gateways of other regions ask this one, with the region token. Off
 * without SWITCHYARD_REGION_TOKEN. Forwarded inference requests come in on `/v1` (see the auth hook).
 */
export function internalRoutes(app: FastifyInstance, deps: InternalDeps): void {
  void app.register(
    async (internal) => {
      internal.addHook('onRequest', async (request) => regionAuth(request, deps.token));
      internal.get('/summary', async () => deps.summary());
      const limits = deps.limits;
      if (limits !== undefined) {
        internal.post('/limits/grant', { schema: { body: SliceBody } }, async (request) => {
          const b = request.body as SliceCall;
          return limits.grant(b.keyId, b.limits, b.slice, b.region ?? '');
        });
        internal.post('/limits/renew-slots', { schema: { body: SlotsBody } }, async (request) => {
          const b = request.body as { keyId: string; slots: string[] };
          return { gone: await limits.renewSlots(b.keyId, b.slots) };
        });
        internal.post('/limits/give-back', { schema: { body: SliceBody } }, async (request) => {
          const b = request.body as SliceCall;
          await limits.giveBack(b.keyId, b.limits, b.slice);
          return { ok: true };
        });
      }
      internal.get('/responses/:id', async (request) => {
        const id = (request.params as { id: string }).id;
        const found = await deps.response(id);
        if (found === undefined) throw new SwitchyardError(ErrorCode.NotFound, `Response with id '${id}' not found.`, { param: 'response_id' });
        return found;
      });
    },
    { prefix: '/internal/v1' },
  );
}
