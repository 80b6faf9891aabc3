import type { FastifyInstance } from 'fastify';
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
