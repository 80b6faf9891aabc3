import { DEFAULT_MAX_TOKENS, MAX_MODEL_LEN, countPromptTokens, echoWordsOf } from './sim-text.js';

/**
 * Validation of the three inference bodies, down to what the simulator needs. Failures are thrown
 * as `SimRequestError` and answered with vLLM's error body.
 */

export class SimRequestError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = 'SimRequestError';
  }
}

function badRequest(message: string, param: string | null = null): SimRequestError {
  return new SimRequestError(400, 'BadRequestError', message, param);
}

export interface GenerationRequest {
  readonly model: string;
  /** What seeds the output: every role and text of the prompt. */
  readonly promptKey: string;
  readonly promptTokens: number;
  readonly echoWords: readonly string[] | null;
  /**
   * vLLM's `continue_final_message`: the final assistant message is a prefix of the answer, and
   * generation continues after its this many tokens, as if the answer had been cut there.
   */
  readonly continuedTokens: number;
  readonly maxTokens: number;
  readonly ignoreEos: boolean;
  readonly stream: boolean;
  readonly includeUsage: boolean;
}

export interface EmbeddingRequest {
  readonly model: string;
  readonly inputs: readonly string[];
  readonly promptTokens: number;
  readonly base64: boolean;
}

type Json = Record<string, unknown>;

function asObject(body: unknown): Json {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw badRequest('The request body must be a JSON object.');
  }
  return body as Json;
}

function pickModel(body: Json, models: readonly string[]): string {
  const model = body['model'];
  // vLLM serves its one model when the field is absent; the simulator serves the first.
  if (model === undefined || model === null) return models[0] ?? '';
  if (typeof model !== 'string') throw badRequest("'model' must be a string.", 'model');
  if (!models.includes(model)) {
    throw new SimRequestError(404, 'NotFoundError', `The model \`${model}\` does not exist.`, 'model');
  }
  return model;
}

function optionalInt(body: Json, field: string): number | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw badRequest(`${field} must be at least 1, got ${JSON.stringify(v)}.`, field);
  }
  return v;
}

function optionalBool(body: Json, field: string): boolean {
  const v = body[field];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw badRequest(`'${field}' must be a boolean.`, field);
  return v;
}

function streamFlags(body: Json): { stream: boolean; includeUsage: boolean } {
  const stream = optionalBool(body, 'stream');
  const opts = body['stream_options'];
  if (opts === undefined || opts === null) return { stream, includeUsage: false };
  if (!stream) throw badRequest('Stream options can only be defined when `stream=True`.', 'stream_options');
  return { stream, includeUsage: optionalBool(asObject(opts), 'include_usage') };
}

function checkCommon(body: Json, promptTokens: number, maxTokens: number): void {
  const n = body['n'];
  if (n !== undefined && n !== null && n !== 1) throw badRequest('The simulator supports only n=1.', 'n');
  if (promptTokens + maxTokens > MAX_MODEL_LEN) {
    throw badRequest(
      `This model's maximum context length is ${MAX_MODEL_LEN} tokens. However, you requested ` +
        `${promptTokens + maxTokens} tokens (${promptTokens} in the messages, ${maxTokens} in the completion). ` +
        'Please reduce the length of the messages or completion.',
    );
  }
}

/** Text of a message's `content`: a string, or the `text` of its text parts; null is empty. */
function contentText(content: unknown, index: number): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p: unknown) => (typeof p === 'object' && p !== null && (p as Json)['type'] === 'text' ? (p as Json)['text'] : ''))
      .map((t) => (typeof t === 'string' ? t : ''))
      .join('');
  }
  throw badRequest(`messages[${index}].content must be a string or an array of content parts.`, 'messages');
}

const ECHO_PREFIX = 'echo:';

export function parseChatRequest(raw: unknown, models: readonly string[]): GenerationRequest {
  const body = asObject(raw);
  const messages = body['messages'];
  if (!Array.isArray(messages) || messages.length === 0) {
    throw badRequest("'messages' is a required property and must be a non-empty array.", 'messages');
  }
  const model = pickModel(body, models);
  const turns = messages.map((m: unknown, i) => {
    if (typeof m !== 'object' || m === null || typeof (m as Json)['role'] !== 'string') {
      throw badRequest(`messages[${i}] must be an object with a string 'role'.`, 'messages');
    }
    return { role: (m as Json)['role'] as string, text: contentText((m as Json)['content'], i) };
  });
  // continue_final_message: the final assistant turn is the start of the answer, not a turn.
  const prefix = body['continue_final_message'] === true && turns.length > 1 && turns.at(-1)?.role === 'assistant' ? turns.pop() : undefined;
  const continuedTokens = prefix === undefined ? 0 : echoWordsOf(prefix.text).length;
  const texts = turns.map((t) => t.text);
  const lastUser = turns.findLastIndex((t) => t.role === 'user');
  let echoWords: string[] | null = null;
  if (lastUser >= 0 && texts[lastUser]?.startsWith(ECHO_PREFIX)) {
    // Echo every turn, so a test sees which earlier turns reached the engine.
    const echoed = texts.map((t, i) => (i === lastUser ? t.slice(ECHO_PREFIX.length) : t));
    echoWords = echoWordsOf(echoed.join('\n'));
  }
  const promptTokens = countPromptTokens(texts.join(''));
  const maxTokens = optionalInt(body, 'max_completion_tokens') ?? optionalInt(body, 'max_tokens') ?? DEFAULT_MAX_TOKENS;
  checkCommon(body, promptTokens, maxTokens);
  return {
    model,
    promptKey: turns.map((t) => `${t.role}\u0001${t.text}`).join('\u0002'),
    promptTokens: promptTokens + countPromptTokens(prefix?.text ?? ''),
    echoWords,
    continuedTokens,
    maxTokens,
    ignoreEos: optionalBool(body, 'ignore_eos'),
    ...streamFlags(body),
  };
}

function isTokenArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((t) => typeof t === 'number' && Number.isInteger(t));
}

export function parseCompletionRequest(raw: unknown, models: readonly string[]): GenerationRequest {
  const body = asObject(raw);
  let prompt = body['prompt'];
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string') prompt = prompt[0];
  let text: string;
  let promptTokens: number;
  if (typeof prompt === 'string') {
    text = prompt;
    promptTokens = countPromptTokens(text);
  } else if (isTokenArray(prompt)) {
    text = prompt.join(' ');
    promptTokens = prompt.length;
  } else {
    throw badRequest("'prompt' must be a string, one string in an array, or an array of token ids.", 'prompt');
  }
  const model = pickModel(body, models);
  const maxTokens = optionalInt(body, 'max_tokens') ?? DEFAULT_MAX_TOKENS;
  checkCommon(body, promptTokens, maxTokens);
  return {
    model,
    promptKey: text,
    promptTokens,
    echoWords: text.startsWith(ECHO_PREFIX) ? echoWordsOf(text.slice(ECHO_PREFIX.length)) : null,
    continuedTokens: 0,
    maxTokens,
    ignoreEos: optionalBool(body, 'ignore_eos'),
    ...streamFlags(body),
  };
}

export function parseEmbeddingRequest(raw: unknown, models: readonly string[]): EmbeddingRequest {
  const body = asObject(raw);
  const input = body['input'];
  let items: Array<{ text: string; tokens: number }>;
  if (typeof input === 'string') {
    items = [{ text: input, tokens: countPromptTokens(input) }];
  } else if (isTokenArray(input)) {
    items = [{ text: input.join(' '), tokens: input.length }];
  } else if (Array.isArray(input) && input.length > 0 && input.every((s) => typeof s === 'string' || isTokenArray(s))) {
    items = input.map((s: string | number[]) =>
      typeof s === 'string' ? { text: s, tokens: countPromptTokens(s) } : { text: s.join(' '), tokens: s.length },
    );
  } else {
    throw badRequest("'input' must be a string, an array of strings, or token ids.", 'input');
  }
  const model = pickModel(body, models);
  const format = body['encoding_format'] ?? 'float';
  if (format !== 'float' && format !== 'base64') {
    throw badRequest("'encoding_format' must be 'float' or 'base64'.", 'encoding_format');
  }
  return {
    model,
    inputs: items.map((i) => i.text),
    promptTokens: items.reduce((sum, i) => sum + i.tokens, 0),
    base64: format === 'base64',
  };
}
