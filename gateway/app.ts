import { randomBytes } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../core/logger.js';
import type { GatewayDeps } from './gateway-deps.js';
import { errorHandling } from './plugins/error-handler.js';
import { requestStart } from './plugins/auth.js';
import { jsonBody } from './plugins/json-body.js';
import { strictBodyValidators } from './plugins/validation.js';
import { adminRoutes } from './routes/admin/admin-routes.js';
import { ConsoleSessions } from './plugins/console-session.js';
import { consoleRoutes } from './routes/console.js';
import { internalRoutes } from './routes/internal/internal-routes.js';
import { healthRoutes } from './routes/health.js';
import { inferenceRoutes } from './routes/v1/inference.js';
import { modelRoutes } from './routes/v1/models.js';
import { responsesRoutes } from './routes/v1/responses.js';
import './request-context.js';

const REQUEST_ID = /^[\w.:-]{1,128}$/;
// Generated ids: a random per-process tag plus a counter. Unique across replicas, and cheaper
// than a UUID per request.
const ID_TAG = `req_${randomBytes(6).toString('hex')}`;
let idCounter = 0;

/** Builds the gateway's HTTP app. Never listens: `main` (or a test) does. */
export function buildApp(deps: GatewayDeps, logger: Logger): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // One log line per request would dominate the gateway's CPU; failures are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.settings.bodyLimitBytes,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : `${ID_TAG}${(++idCounter).toString(36)}`;
    },
    // No child logger per request (it costs on every request and most requests log nothing);
    // the few log lines about a request carry `reqId` themselves.
    childLoggerFactory: (logger) => logger,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    schemaController: { compilersFactory: { buildValidator: strictBodyValidators() } },
  });

  app.decorateRequest('rawBody', undefined);
  jsonBody(app);

  requestStart(app, deps.settings.auth, deps.keyCache, deps.settings.regionToken);
  app.addHook('onResponse', (request, reply, done) => {
    deps.recordResponse(request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime, request.call);
    deps.accounting.finish(request, reply.statusCode, reply.elapsedTime);
    done();
  });

  errorHandling(app);
  healthRoutes(app, deps);
  modelRoutes(app, deps);
  inferenceRoutes(app, deps);
  responsesRoutes(app, deps);
  if (deps.internal !== undefined) internalRoutes(app, deps.internal);
  // The console (/console) is on exactly when the admin API is; its session cookie works there too.
  const sessions = deps.admin === undefined ? undefined : new ConsoleSessions({ adminToken: deps.admin.token });
  consoleRoutes(app, sessions);
  if (deps.admin !== undefined) {
    const views = { sessions, registry: deps.registry, horizonSeconds: deps.settings.capacityHorizonSeconds, responses: deps.responses };
    adminRoutes(app, deps.admin, (id) => deps.keyCache?.evict(new Set([id])), views);
  }
  return app;
}
