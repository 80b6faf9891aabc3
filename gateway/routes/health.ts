import type { FastifyInstance } from 'fastify';
import type { GatewayDeps } from '../gateway-deps.js';

/** Liveness, readiness and the Prometheus endpoint. */
export function healthRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/healthz', async () => ({ status: 'ok' }));

  // Ready: accepting, and at least one node can take traffic.
  app.get('/readyz', async (_request, reply) => {
    const models = deps.fleet.availableModels(deps.region.id, Date.now());
    const ready = deps.isAccepting() && models.length > 0;
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', region: deps.region.id, models });
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await deps.registry.metrics();
    return reply.header('content-type', deps.registry.contentType).send(text);
  });
}
