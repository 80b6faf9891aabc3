import type { FastifyInstance } from 'fastify';
import type { GatewayDeps } from '../../gateway-deps.js';

/** `GET /v1/models`: models served by at least one healthy node, in OpenAI's list format. */
export function modelRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const created = Math.floor(Date.now() / 1000);
  app.get('/v1/models', async () => ({
    object: 'list',
    data: deps.fleet.availableModels(deps.region.id, Date.now()).map((id) => ({ id, object: 'model', created, owned_by: 'switchyard' })),
  }));
}
