import type { FastifyInstance } from 'fastify';
import { regionAuth } from '../../plugins/auth.js';
import type { RegionSummary } from '../../regions/region-summary.js';

export interface InternalDeps {
  /** SWITCHYARD_REGION_TOKEN: every call here must carry it. */
  readonly token: string;
  /** This region's capacity summary, from the gateway's ledger view. */
  summary(): RegionSummary;
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
    },
    { prefix: '/internal/v1' },
  );
}
