import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../../core/errors.js';
import type { ApiKeyRecord, KeyStore } from '../../../core/storage/key-store.js';
import type { UsageStore } from '../../../core/storage/usage-store.js';
import type { NodeStore } from '../../../core/storage/node-store.js';
import type { Fleet } from '../../../scheduler/fleet.js';
import { adminAuth } from '../../plugins/auth.js';
import { adminOrSession, type ConsoleSessions } from '../../plugins/console-session.js';
import { fleetRoutes } from './fleet-routes.js';
import { nodeRoutes } from './node-routes.js';
import { bootstrapTokenRoutes } from './bootstrap-token-routes.js';
import { queueRoutes, type QueueViewDeps } from './queue-routes.js';
import { usageSeriesRoutes } from './usage-series-routes.js';

export interface AdminDeps {
  readonly token: string;
  readonly keys: KeyStore;
  readonly usage: UsageStore;
  readonly nodes: NodeStore;
  readonly fleet: Fleet;
}

/** What the console's views need besides the stores (all optional: tests build the admin API without them). */
export interface AdminViews extends Partial<QueueViewDeps> {
  /** Console sessions: their cookie is accepted instead of the bearer token (CSRF-checked). */
  readonly sessions?: ConsoleSessions | undefined;
  readonly horizonSeconds?: number;
}

const Id = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' });
const Count = Type.Integer({ minimum: 0 });

const CreateKey = Type.Object(
  {
    tenant: Id,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    limits: Type.Object(
      { requestsPerMinute: Count, tokensPerMinute: Count, maxConcurrent: Count },
      { additionalProperties: false },
    ),
    models: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
    priority: Type.Optional(Type.Union([Type.Literal('interactive'), Type.Literal('standard'), Type.Literal('batch')])),
  },
  { additionalProperties: false },
);
const CreateTenant = Type.Object(
  { id: Id, name: Type.Optional(Type.String({ maxLength: 200 })), weight: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1000 })) },
  { additionalProperties: false },
);
const UsageQuery = Type.Object({
  from: Type.Optional(Type.String({ format: 'date-time' })),
  to: Type.Optional(Type.String({ format: 'date-time' })),
  groupBy: Type.Optional(Type.Union(['tenant', 'key', 'model', 'region', 'node'].map((g) => Type.Literal(g)))),
});

interface CreateKeyBody {
  tenant: string;
  name: string;
  limits: ApiKeyRecord['limits'];
  models?: string[];
  priority?: ApiKeyRecord['priority'];
}

/**
 * `/admin/v1`: tenants, API keys and usage. Authorised by the admin token; only registered when
 * one is configured. Key secrets are returned once, at creation, and never again.
 */
export function adminRoutes(app: FastifyInstance, deps: AdminDeps, onRevoked?: (keyId: string) => void, views: AdminViews = {}): void {
  void app.register(
    async (admin) => {
      admin.addHook('onRequest', async (request) => adminOrSession(request, views.sessions, () => adminAuth(request, deps.token)));

      admin.post('/keys', { schema: { body: CreateKey } }, async (request, reply) => {
        const body = request.body as CreateKeyBody;
        const { record, secret } = await deps.keys.createKey({
          tenant: body.tenant,
          name: body.name,
          limits: body.limits,
          models: body.models ?? ['*'],
          priority: body.priority ?? 'standard',
        });
        return reply.code(201).send({ ...keyJson(record), key: secret });
      });
      admin.get('/keys', async (request) => {
        const tenant = (request.query as { tenant?: string }).tenant;
        return { object: 'list', data: (await deps.keys.listKeys(tenant)).map(keyJson) };
      });
      admin.get('/keys/:id', async (request) => {
        const record = await deps.keys.getKey((request.params as { id: string }).id);
        if (record === undefined) throw notFound('key');
        return keyJson(record);
      });
      admin.delete('/keys/:id', async (request) => {
        const id = (request.params as { id: string }).id;
        if (!(await deps.keys.revokeKey(id))) throw notFound('key');
        onRevoked?.(id);
        return { id, object: 'api_key', revoked: true };
      });

      admin.post('/tenants', { schema: { body: CreateTenant } }, async (request, reply) => {
        const body = request.body as { id: string; name?: string; weight?: number };
        const tenant = await deps.keys.createTenant({
          id: body.id,
          ...(body.name === undefined ? {} : { name: body.name }),
          ...(body.weight === undefined ? {} : { weight: body.weight }),
        });
        return reply.code(201).send(tenant);
      });
      admin.get('/tenants', async () => ({ object: 'list', data: await deps.keys.listTenants() }));
      admin.delete('/tenants/:id', async (request) => {
        const id = (request.params as { id: string }).id;
        if (!(await deps.keys.deleteTenant(id))) throw notFound('tenant');
        return { id, object: 'tenant', deleted: true };
      });

      nodeRoutes(admin, deps.nodes, deps.fleet);
      bootstrapTokenRoutes(admin, deps.nodes.bootstrapTokens, deps.fleet);
      fleetRoutes(admin, { fleet: deps.fleet, registry: views.registry, horizonSeconds: views.horizonSeconds ?? 30 });
      queueRoutes(admin, { registry: views.registry, responses: views.responses });
      usageSeriesRoutes(admin, deps.usage);

      admin.get('/usage', { schema: { querystring: UsageQuery } }, async (request) => {
        const q = request.query as { from?: string; to?: string; groupBy?: 'tenant' | 'key' | 'model' | 'region' | 'node' };
        const to = q.to === undefined ? new Date() : new Date(q.to);
        const from = q.from === undefined ? new Date(to.getTime() - 24 * 3600_000) : new Date(q.from);
        const groupBy = q.groupBy ?? 'tenant';
        const rows = await deps.usage.aggregate({ from, to, groupBy });
        return {
          object: 'list',
          group_by: groupBy,
          from: from.toISOString(),
          to: to.toISOString(),
          data: rows.map((r) => ({
            group: r.group,
            requests: r.requests,
            prompt_tokens: r.promptTokens,
            completion_tokens: r.completionTokens,
            errors: r.errors,
          })),
        };
      });
    },
    { prefix: '/admin/v1' },
  );
}

function keyJson(r: ApiKeyRecord): Record<string, unknown> {
  return {
    id: r.id,
    object: 'api_key',
    tenant: r.tenantId,
    name: r.name,
    key_prefix: r.keyPrefix,
    limits: r.limits,
    models: r.models,
    priority: r.priority,
    created_at: r.createdAt.toISOString(),
    revoked_at: r.revokedAt?.toISOString() ?? null,
  };
}

function notFound(what: string): SwitchyardError {
  return new SwitchyardError(ErrorCode.NotFound, `No such ${what}.`);
}
