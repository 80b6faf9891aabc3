import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../../core/errors.js';
import type { NodeRecord, NodeStore } from '../../../core/storage/node-store.js';
import type { Fleet } from '../../../scheduler/fleet.js';

const Id = Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' });
const RegisterNode = Type.Object(
  {
    id: Id,
    region: Id,
    cluster: Id,
    url: Type.String({ pattern: '^https?://[^\\s?#]+$' }),
    engine: Type.Union(['vllm', 'sglang', 'llamacpp', 'tgi', 'ollama', 'openai'].map((e) => Type.Literal(e))),
    models: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    capacity: Type.Object(
      { tokensPerSecond: Type.Number({ exclusiveMinimum: 0 }), maxSequences: Type.Integer({ minimum: 1 }) },
      { additionalProperties: false },
    ),
    /** Re-registering an id keeps its join token unless this asks for a new one. */
    rotate_token: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

interface RegisterBody {
  id: string;
  region: string;
  cluster: string;
  url: string;
  engine: string;
  models: string[];
  capacity: { tokensPerSecond: number; maxSequences: number };
  rotate_token?: boolean;
}

/**
 * `/admin/v1/nodes`: the node registry. Registration returns the agent's join token once (201).
 * Registering an id again updates its spec and keeps its token (200, `join_token: null`), so a
 * deployment can re-run its registration step without cutting off running agents;
 * `rotate_token: true` issues a new token instead. Nodes declared in regions.yaml are listed
 * too, read-only (`source: "static"`).
 */
export function nodeRoutes(admin: FastifyInstance, nodes: NodeStore, fleet: Fleet): void {
  const staticJson = (id: string): Record<string, unknown> | undefined => {
    const state = fleet.staticIds.has(id) ? fleet.nodes.get(id) : undefined;
    if (state === undefined) return undefined;
    const s = state.spec;
    return {
      id: s.id, object: 'node', source: 'static', region: s.regionId, cluster: s.clusterId, url: s.baseUrl, engine: s.engine,
      models: s.models, capacity: { tokensPerSecond: s.tokensPerSecond, maxSequences: s.maxSequences }, draining: false,
      live: { healthy: state.isAvailable(Date.now()), fresh: state.isFresh(Date.now()), inflight: state.inflight, report: state.report ?? null },
    };
  };
  const readOnly = (id: string): void => {
    if (fleet.staticIds.has(id)) {
      throw new SwitchyardError(ErrorCode.InvalidRequest, `Node '${id}' is declared in regions.yaml; change it there.`, { status: 409 });
    }
  };

  admin.post('/nodes', { schema: { body: RegisterNode } }, async (request, reply) => {
    const b = request.body as RegisterBody;
    if (fleet.region(b.region) === undefined) {
      throw new SwitchyardError(ErrorCode.InvalidRequest, `Unknown region '${b.region}'.`, { param: 'region' });
    }
    if (fleet.staticIds.has(b.id)) throw new SwitchyardError(ErrorCode.InvalidRequest, `Node id '${b.id}' is taken by regions.yaml.`, { status: 409, param: 'id' });
    const { record, joinToken, created } = await nodes.register(
      {
        id: b.id, region: b.region, cluster: b.cluster, url: b.url.replace(/\/+$/, ''), engine: b.engine, models: b.models,
        tokensPerSecond: b.capacity.tokensPerSecond, maxSequences: b.capacity.maxSequences,
      },
      { rotateToken: b.rotate_token === true },
    );
    return reply.code(created ? 201 : 200).send({ ...nodeJson(record, fleet), created, join_token: joinToken ?? null });
  });

  admin.get('/nodes', async () => {
    const registered = (await nodes.list()).map((r) => nodeJson(r, fleet));
    const declared = [...fleet.staticIds].map((id) => staticJson(id) as Record<string, unknown>);
    return { object: 'list', data: [...declared, ...registered] };
  });

  admin.get('/nodes/:id', async (request) => {
    const id = (request.params as { id: string }).id;
    const found = staticJson(id) ?? (await nodes.get(id).then((r) => (r === undefined ? undefined : nodeJson(r, fleet))));
    if (found === undefined) throw new SwitchyardError(ErrorCode.NotFound, `No such node '${id}'.`);
    return found;
  });

  for (const [action, draining] of [['drain', true], ['resume', false]] as const) {
    admin.post(`/nodes/:id/${action}`, async (request) => {
      const id = (request.params as { id: string }).id;
      readOnly(id);
      const record = await nodes.setDraining(id, draining);
      if (record === undefined) throw new SwitchyardError(ErrorCode.NotFound, `No such node '${id}'.`);
      return nodeJson(record, fleet);
    });
  }

  admin.delete('/nodes/:id', async (request) => {
    const id = (request.params as { id: string }).id;
    readOnly(id);
    if (!(await nodes.remove(id))) throw new SwitchyardError(ErrorCode.NotFound, `No such node '${id}'.`);
    return { id, object: 'node', deleted: true };
  });
}

function nodeJson(r: NodeRecord, fleet: Fleet): Record<string, unknown> {
  const state = fleet.nodes.get(r.id);
  const now = Date.now();
  return {
    id: r.id, object: 'node', source: 'registered', region: r.region, cluster: r.cluster, url: r.url, engine: r.engine,
    models: r.models, capacity: { tokensPerSecond: r.tokensPerSecond, maxSequences: r.maxSequences }, draining: r.draining,
    created_at: r.createdAt.toISOString(), updated_at: r.updatedAt.toISOString(),
    // This gateway's view: it learns registrations within about a second.
    live:
      state === undefined
        ? null
        : {
            healthy: state.isAvailable(now),
            fresh: state.isFresh(now),
            inflight: state.inflight,
            report: state.report ?? null,
            learnedTokensPerSecond: state.learnedTokensPerSecond ?? null,
          },
  };
}
