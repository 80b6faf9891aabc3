import type { FastifyInstance } from 'fastify';
import type { GatewayDeps } from '../gateway-deps.js';

/** Liveness, readiness and the Prometheus endpoint. */
export function healthRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/healthz', async () => ({ status: 'ok' }));

  // Ready: accepting, and at least one node can take traffic. Background work is a detail: a
  // region with no worker still serves interactive requests, so it does not make this 503.
  app.get('/readyz', async (_request, reply) => {
    const now = Date.now();
    const models = deps.fleet.availableModels(deps.region.id, now);
    const ready = deps.isAccepting() && models.length > 0;
    const jobs = deps.responses.jobs;
    const background =
      jobs === undefined
        ? { status: 'off' }
        : { status: jobs.unavailable(now) === undefined ? (jobs.workerCount() === 0 ? 'no_worker_yet' : 'ok') : 'no_worker', workers: jobs.workerCount() ?? null };
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', region: deps.region.id, models, background });
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await deps.registry.metrics();
    return reply.header('content-type', deps.registry.contentType).send(text);
  });
}
