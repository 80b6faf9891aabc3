import { Type, type Static } from '@sinclair/typebox';

/**
 * The schema of `regions.yaml`. Field units are in the names (`rttMs`, `tokensPerSecond`);
 * docs/configuration.md documents each field with its default.
 */

export const EngineKind = Type.Union(
  ['vllm', 'sglang', 'llamacpp', 'tgi', 'ollama', 'openai', 'sim'].map((k) => Type.Literal(k)),
);
export type EngineKind = 'vllm' | 'sglang' | 'llamacpp' | 'tgi' | 'ollama' | 'openai' | 'sim';

const Id = Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' });

const SimOptions = Type.Object(
  {
    ttftMs: Type.Optional(Type.Number({ minimum: 0 })),
    seed: Type.Optional(Type.Integer()),
  },
  { additionalProperties: false },
);

const Node = Type.Object(
  {
    id: Id,
    url: Type.String({ minLength: 1 }),
    engine: EngineKind,
    models: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    capacity: Type.Object(
      {
        tokensPerSecond: Type.Number(),
        maxSequences: Type.Integer(),
      },
      { additionalProperties: false },
    ),
    /** Extra headers sent upstream, e.g. an API key for an `openai` engine. */
    headers: Type.Optional(Type.Record(Type.String(), Type.String())),
    sim: Type.Optional(SimOptions),
  },
  { additionalProperties: false },
);

const Cluster = Type.Object(
  {
    id: Id,
    nodes: Type.Optional(Type.Array(Node, { default: [] })),
  },
  { additionalProperties: false },
);

const Region = Type.Object(
  {
    id: Id,
    name: Type.Optional(Type.String()),
    residency: Type.String({ minLength: 1 }),
    /**
     * The region's gateway address as the other regions reach it: a region that has one stands
     * alone (its own Redis) and other regions spill to it by forwarding, never by using its nodes.
     */
    gateway: Type.Optional(Type.String({ minLength: 1 })),
    clusters: Type.Optional(Type.Array(Cluster, { default: [] })),
  },
  { additionalProperties: false },
);

const Distance = Type.Object(
  {
    between: Type.Tuple([Id, Id]),
    rttMs: Type.Number(),
  },
  { additionalProperties: false },
);

export const RegionsFileSchema = Type.Object(
  {
    regions: Type.Array(Region, { minItems: 1 }),
    distances: Type.Optional(Type.Array(Distance)),
    /** Round trip assumed between two regions that `distances` does not list. */
    defaultRttMs: Type.Optional(Type.Number()),
    /**
     * The region whose Redis holds every key's authoritative rate-limit buckets; the other
     * standalone regions lease slices of them. Default: the first region.
     */
    limitsHome: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

export type RegionsFile = Static<typeof RegionsFileSchema>;
