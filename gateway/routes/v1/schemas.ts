import { Type } from '@sinclair/typebox';

/**
 * Request bodies: only the fields the gateway reads are constrained. Everything else (tools,
 * response_format, image parts, logprobs, seed, …) passes through to the engine unchanged, which is
 * why every object allows additional properties.
 */
const open = { additionalProperties: true } as const;

const Model = Type.String({ minLength: 1 });
const MaxTokens = Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]));
const StreamOptions = Type.Optional(
  Type.Union([Type.Object({ include_usage: Type.Optional(Type.Boolean()) }, open), Type.Null()]),
);

export const ChatCompletionBody = Type.Object(
  {
    model: Model,
    messages: Type.Array(Type.Object({ role: Type.String({ minLength: 1 }) }, open), { minItems: 1 }),
    stream: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    stream_options: StreamOptions,
    max_tokens: MaxTokens,
    max_completion_tokens: MaxTokens,
    user: Type.Optional(Type.String()),
    prompt_cache_key: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  },
  open,
);

export const CompletionBody = Type.Object(
  {
    model: Model,
    prompt: Type.Union([
      Type.String(),
      Type.Array(Type.String()),
      Type.Array(Type.Integer()),
      Type.Array(Type.Array(Type.Integer())),
    ]),
    stream: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    stream_options: StreamOptions,
    max_tokens: MaxTokens,
  },
  open,
);

export const EmbeddingBody = Type.Object(
  {
    model: Model,
    input: Type.Union([
      Type.String(),
      Type.Array(Type.String(), { minItems: 1 }),
      Type.Array(Type.Integer(), { minItems: 1 }),
      Type.Array(Type.Array(Type.Integer()), { minItems: 1 }),
    ]),
  },
  open,
);

/** The fields the handler reads, common to the three bodies. */
export interface InferenceBody {
  model: string;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  /** End-user id (chat completions): the session affinity key when nothing more specific is sent. */
  user?: string;
  /** OpenAI's cache-routing hint (chat completions): the affinity key unless x-session-id is sent. */
  prompt_cache_key?: string | null;
}
