import { randomBytes } from 'node:crypto';
import { ErrorCode, SwitchyardError } from '../../core/errors.js';
import type { ChatMessage, StoredResponse } from '../../core/storage/response-store.js';

/**
 * The text subset of OpenAI's Responses API, translated to chat completions so that every engine
 * serves it. Fields either map to a chat-completions field, are handled by the gateway, are
 * accepted when they ask for nothing beyond text, or are refused with a 400 naming them.
 */

/** A validated `POST /v1/responses` body. */
export interface ResponsesRequest {
  readonly model: string;
  readonly input: ChatMessage[];
  readonly instructions: string | null;
  readonly previousResponseId: string | null;
  readonly stream: boolean;
  readonly background: boolean;
  readonly store: boolean;
  readonly metadata: Record<string, string>;
  /** OpenAI's cache-routing hint: requests sharing it go to the same node (its prefix cache). */
  readonly promptCacheKey: string | undefined;
  /** Chat-completions fields: max_tokens, temperature, top_p, user, response_format… */
  readonly params: Record<string, unknown>;
}

/** Fields the gateway itself handles. */
const HANDLED = new Set(['model', 'input', 'instructions', 'previous_response_id', 'stream', 'background', 'store', 'metadata', 'prompt_cache_key']);

/** Fields that map one to one onto chat completions. */
const MAPPED: Record<string, string> = {
  max_output_tokens: 'max_tokens',
  temperature: 'temperature',
  top_p: 'top_p',
  user: 'user',
  safety_identifier: 'user',
  top_logprobs: 'top_logprobs',
};

/** Fields accepted only with values that ask for plain text generation (or that change nothing here). */
const NEUTRAL: Record<string, (v: unknown) => boolean> = {
  tools: (v) => v === null || (Array.isArray(v) && v.length === 0),
  tool_choice: (v) => v === null || v === 'none' || v === 'auto',
  parallel_tool_calls: () => true,
  truncation: (v) => v === null || v === 'disabled',
  include: (v) => v === null || (Array.isArray(v) && v.length === 0),
  reasoning: (v) => v === null || (typeof v === 'object' && Object.keys(v as object).length === 0),
  service_tier: (v) => v === null || v === 'auto' || v === 'default',
  stream_options: (v) => v === null || typeof v === 'object',
};

function invalid(message: string, param: string): SwitchyardError {
  return new SwitchyardError(ErrorCode.InvalidRequest, message, { param });
}

/** `resp_` and 48 hex digits, then the id of the region that holds it (any gateway can find it). */
const RESPONSE_ID = /^resp_[0-9a-f]{48}/;

export function newResponseId(region = ''): string {
  return `resp_${randomBytes(24).toString('hex')}${region}`;
}

/** The region a response id names; undefined for ids made before regions were named in them. */
export function regionOfResponseId(id: string): string | undefined {
  return RESPONSE_ID.test(id) && id.length > 53 ? id.slice(53) : undefined;
}

export function newMessageId(): string {
  return `msg_${randomBytes(24).toString('hex')}`;
}

/** Validates and normalises a Responses request body; throws 400s in OpenAI's shape. */
export function parseResponsesRequest(raw: unknown): ResponsesRequest {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('The request body must be a JSON object.', 'body');
  const body = raw as Record<string, unknown>;
  const model = body['model'];
  if (typeof model !== 'string' || model === '') throw invalid("'model' is required and must be a non-empty string.", 'model');
  const params: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(body)) {
    if (HANDLED.has(field) || value === undefined) continue;
    const chatField = MAPPED[field];
    if (chatField !== undefined) {
      if (value !== null) params[chatField] = value;
      continue;
    }
    if (field === 'text') {
      mapTextFormat(value, params);
      continue;
    }
    const neutral = NEUTRAL[field];
    if (neutral !== undefined) {
      if (!neutral(value)) throw invalid(`'${field}' with this value is not supported: this gateway serves the text subset of the Responses API.`, field);
      continue;
    }
    throw invalid(`Unsupported parameter: '${field}' is not supported by this gateway's Responses API (text only).`, field);
  }
  const maxTokens = params['max_tokens'];
  if (maxTokens !== undefined && (!Number.isInteger(maxTokens) || (maxTokens as number) < 1)) {
    throw invalid("'max_output_tokens' must be an integer >= 1.", 'max_output_tokens');
  }
  const instructions = body['instructions'];
  if (instructions !== undefined && instructions !== null && typeof instructions !== 'string') throw invalid("'instructions' must be a string.", 'instructions');
  const previous = body['previous_response_id'];
  if (previous !== undefined && previous !== null && (typeof previous !== 'string' || previous === '')) {
    throw invalid("'previous_response_id' must be a response id.", 'previous_response_id');
  }
  const background = bool(body, 'background', false);
  const store = bool(body, 'store', true);
  const stream = bool(body, 'stream', false);
  if (background && !store) throw invalid("A background response must be stored: 'background': true needs 'store' true.", 'store');
  const cacheKey = body['prompt_cache_key'];
  if (cacheKey !== undefined && cacheKey !== null && typeof cacheKey !== 'string') throw invalid("'prompt_cache_key' must be a string.", 'prompt_cache_key');
  return {
    model,
    input: parseInput(body['input']),
    instructions: typeof instructions === 'string' ? instructions : null,
    previousResponseId: typeof previous === 'string' ? previous : null,
    stream,
    background,
    store,
    metadata: parseMetadata(body['metadata']),
    promptCacheKey: typeof cacheKey === 'string' && cacheKey !== '' ? cacheKey : undefined,
    params,
  };
}

function bool(body: Record<string, unknown>, field: string, fallback: boolean): boolean {
  const v = body[field];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw invalid(`'${field}' must be a boolean.`, field);
  return v;
}

function mapTextFormat(value: unknown, params: Record<string, unknown>): void {
  if (value === null) return;
  const format = typeof value === 'object' ? (value as { format?: { type?: unknown; schema?: unknown; name?: unknown; strict?: unknown } }).format : undefined;
  if (format === undefined || format === null || format.type === 'text') return;
  if (format.type === 'json_object') {
    params['response_format'] = { type: 'json_object' };
    return;
  }
  if (format.type === 'json_schema') {
    params['response_format'] = { type: 'json_schema', json_schema: { name: format.name ?? 'response', schema: format.schema, strict: format.strict ?? false } };
    return;
  }
  throw invalid("'text.format.type' must be text, json_object or json_schema.", 'text.format');
}

function parseMetadata(value: unknown): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid("'metadata' must be an object of strings.", 'metadata');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > 16) throw invalid("'metadata' may hold at most 16 keys.", 'metadata');
  for (const [k, v] of entries) {
    if (typeof v !== 'string' || k.length > 64 || v.length > 512) throw invalid("'metadata' values must be strings (keys ≤ 64, values ≤ 512 characters).", 'metadata');
  }
  return value as Record<string, string>;
}

const ROLES = new Set(['user', 'assistant', 'system', 'developer']);

/** `input`: a string (one user message) or a list of message items with text content. */
function parseInput(value: unknown): ChatMessage[] {
  if (typeof value === 'string') return [{ role: 'user', content: value }];
  if (!Array.isArray(value) || value.length === 0) throw invalid("'input' must be a string or a non-empty list of message items.", 'input');
  return value.map((item, i) => {
    if (typeof item !== 'object' || item === null) throw invalid(`input[${i}] must be a message item.`, `input[${i}]`);
    const m = item as { type?: unknown; role?: unknown; content?: unknown };
    if (m.type !== undefined && m.type !== 'message') {
      throw invalid(`input[${i}].type '${String(m.type)}' is not supported: only message items with text content.`, `input[${i}].type`);
    }
    if (typeof m.role !== 'string' || !ROLES.has(m.role)) throw invalid(`input[${i}].role must be user, assistant, system or developer.`, `input[${i}].role`);
    const role = m.role === 'developer' ? 'system' : (m.role as ChatMessage['role']);
    return { role, content: contentText(m.content, i) };
  });
}

function contentText(content: unknown, i: number): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw invalid(`input[${i}].content must be a string or a list of text parts.`, `input[${i}].content`);
  return content
    .map((part: unknown, j) => {
      const p = part as { type?: unknown; text?: unknown };
      if ((p.type === 'input_text' || p.type === 'output_text' || p.type === 'text') && typeof p.text === 'string') return p.text;
      throw invalid(`input[${i}].content[${j}]: only input_text and output_text parts are supported.`, `input[${i}].content[${j}]`);
    })
    .join('');
}

/**
 * The chat-completions body for a response: its instructions as the system message (OpenAI does
 * not carry instructions over from earlier turns), the earlier turns in order, then this input.
 */
export function chatBody(r: StoredResponse, history: readonly ChatMessage[], stream: boolean): Record<string, unknown> {
  const messages: ChatMessage[] = [];
  if (r.instructions !== null) messages.push({ role: 'system', content: r.instructions });
  messages.push(...history, ...r.input);
  return { ...r.params, model: r.model, messages, stream, ...(stream ? { stream_options: { include_usage: true } } : {}) };
}

/**
 * `GET /v1/responses/{id}/input_items`: the input messages of that request (not the earlier turns,
 * as OpenAI), newest first unless `order=asc`, `limit` 1–100 (20), cursor `after`/`before` an item
 * id. Items have no stored id of their own: theirs is derived from the response id and position,
 * so it is stable. `developer` messages were stored as `system` and are listed so.
 */
export function inputItemsPage(r: StoredResponse, query: Record<string, unknown>): Record<string, unknown> {
  const limit = query['limit'] === undefined ? 20 : Number(query['limit']);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw invalid("'limit' must be an integer from 1 to 100.", 'limit');
  const order = query['order'] ?? 'desc';
  if (order !== 'asc' && order !== 'desc') throw invalid("'order' must be 'asc' or 'desc'.", 'order');
  const base = r.id.startsWith('resp_') ? r.id.slice('resp_'.length) : r.id;
  const items = r.input.map((m, i) => ({
    id: `msg_${base}${i.toString(16).padStart(4, '0')}`,
    type: 'message',
    status: 'completed',
    role: m.role,
    content: [m.role === 'assistant' ? { type: 'output_text', text: m.content, annotations: [] } : { type: 'input_text', text: m.content }],
  }));
  if (order === 'desc') items.reverse();
  let from = 0;
  let to = items.length;
  for (const [name, cursor] of [['after', query['after']], ['before', query['before']]] as const) {
    if (cursor === undefined) continue;
    const at = items.findIndex((item) => item.id === cursor);
    if (at === -1) throw invalid(`'${name}' must be the id of an input item of this response.`, name);
    if (name === 'after') from = at + 1;
    else to = at;
  }
  const data = items.slice(from, Math.max(from, Math.min(to, from + limit)));
  return {
    object: 'list',
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: from + data.length < to,
  };
}

/** The API object for a stored response (what create, retrieve and cancel return). */
export function toResponseObject(r: StoredResponse): Record<string, unknown> {
  const done = r.status === 'completed' || r.status === 'incomplete';
  const text = r.outputText ?? '';
  return {
    id: r.id,
    object: 'response',
    created_at: r.createdAt,
    status: r.status,
    background: r.background,
    error: r.error,
    incomplete_details: r.incompleteReason === null ? null : { reason: r.incompleteReason },
    instructions: r.instructions,
    max_output_tokens: (r.params['max_tokens'] as number | undefined) ?? null,
    metadata: r.metadata,
    model: r.model,
    output: done || text !== ''
      ? [
          {
            type: 'message',
            id: r.messageId,
            status: done ? 'completed' : 'in_progress',
            role: 'assistant',
            content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
          },
        ]
      : [],
    parallel_tool_calls: false,
    previous_response_id: r.previousResponseId,
    prompt_cache_key: r.promptCacheKey ?? null,
    reasoning: { effort: null, summary: null },
    store: r.store,
    temperature: (r.params['temperature'] as number | undefined) ?? null,
    text: { format: { type: 'text' } },
    tool_choice: 'none',
    tools: [],
    top_p: (r.params['top_p'] as number | undefined) ?? null,
    truncation: 'disabled',
    usage:
      r.usage === null
        ? null
        : {
            input_tokens: r.usage.input_tokens,
            input_tokens_details: { cached_tokens: 0 },
            output_tokens: r.usage.output_tokens,
            output_tokens_details: { reasoning_tokens: 0 },
            total_tokens: r.usage.input_tokens + r.usage.output_tokens,
          },
    user: (r.params['user'] as string | undefined) ?? null,
  };
}
