import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../../core/errors.js';
import type { BootstrapTokenRecord, BootstrapTokenStore } from '../../../core/storage/bootstrap-token-store.js';
import type { Fleet } from '../../../scheduler/fleet.js';

const Id = Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' });
const CreateBootstrapToken = Type.Object(
  {
    region: Id,
    cluster: Id,
    description: Type.Optional(Type.String({ maxLength: 200 })),
    /** Either a time or a lifetime from now; neither: the token does not expire. */
    expires_at: Type.Optional(Type.String({ format: 'date-time' })),
    expires_in_s: Type.Optional(Type.Integer({ minimum: 1 })),
    max_uses: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);

interface CreateBody {
  region: string;
  cluster: string;
  description?: string;
  expires_at?: string;
  expires_in_s?: number;
  max_uses?: number;
}

/**
 * `/admin/v1/bootstrap-tokens`: tokens with which node agents register their own nodes in one
 * region and cluster (Kubernetes: every replica of a model-server Deployment joins with the same
 * one). The secret is in the creation answer only; revoking stops new joins and leaves the nodes
 * that joined.
 */
export function bootstrapTokenRoutes(admin: FastifyInstance, tokens: BootstrapTokenStore, fleet: Fleet): void {
  admin.post('/bootstrap-tokens', { schema: { body: CreateBootstrapToken } }, async (request, reply) => {
    const b = request.body as CreateBody;
    if (fleet.region(b.region) === undefined) throw new SwitchyardError(ErrorCode.InvalidRequest, `Unknown region '${b.region}'.`, { param: 'region' });
    if (b.expires_at !== undefined && b.expires_in_s !== undefined) {
      throw new SwitchyardError(ErrorCode.InvalidRequest, 'Give expires_at or expires_in_s, not both.', { param: 'expires_at' });
    }
    const expiresAt = b.expires_at !== undefined ? new Date(b.expires_at) : b.expires_in_s !== undefined ? new Date(Date.now() + b.expires_in_s * 1000) : undefined;
    if (expiresAt !== undefined && expiresAt.getTime() <= Date.now()) throw new SwitchyardError(ErrorCode.InvalidRequest, 'expires_at is in the past.', { param: 'expires_at' });
    const { record, secret } = await tokens.create({
      region: b.region,
      cluster: b.cluster,
      ...(b.description === undefined ? {} : { description: b.description }),
      ...(expiresAt === undefined ? {} : { expiresAt }),
      ...(b.max_uses === undefined ? {} : { maxUses: b.max_uses }),
    });
    return reply.code(201).send({ ...tokenJson(record), token: secret });
  });

  admin.get('/bootstrap-tokens', async () => ({ object: 'list', data: (await tokens.list()).map(tokenJson) }));

  admin.delete('/bootstrap-tokens/:id', async (request) => {
    const record = await tokens.revoke((request.params as { id: string }).id);
    if (record === undefined) throw new SwitchyardError(ErrorCode.NotFound, 'No such bootstrap token.');
    return { ...tokenJson(record), revoked: true };
  });
}

function tokenJson(r: BootstrapTokenRecord): Record<string, unknown> {
  const now = Date.now();
  const state =
    r.revokedAt !== null ? 'revoked' : r.expiresAt !== null && r.expiresAt.getTime() <= now ? 'expired' : r.maxUses !== null && r.uses >= r.maxUses ? 'used_up' : 'active';
  return {
    id: r.id, object: 'bootstrap_token', region: r.region, cluster: r.cluster, description: r.description, state,
    expires_at: r.expiresAt?.toISOString() ?? null, max_uses: r.maxUses, uses: r.uses,
    created_at: r.createdAt.toISOString(), revoked_at: r.revokedAt?.toISOString() ?? null,
  };
}
