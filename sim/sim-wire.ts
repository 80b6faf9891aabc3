import { randomBytes } from 'node:crypto';
import type { FinishReason } from './sim-text.js';

/**
 * The OpenAI wire format the simulator writes, shaped like the fixtures in
 * shared/fixtures/openai (chat-response.json, chat-stream*.sse, completions-response.json).
 * Stream events are built from a pre-rendered prefix so a token costs one JSON.stringify of its
 * text, which keeps thousands of concurrent streams cheap.
 */

export const SYSTEM_FINGERPRINT = 'fp_switchyard_sim';

export interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
}

export function usageOf(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** Chat usage carries the detail objects OpenAI sends (all zero here). */
function chatUsage(u: Usage): object {
  return {
    ...u,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

function newId(prefix: string): string {
  return `${prefix}${randomBytes(12).toString('hex')}`;
}

export function sseEvent(data: string): string {
  return `data: ${data}\n\n`;
}

export const SSE_DONE = sseEvent('[DONE]');

/** Everything one response needs to write itself, plain or streamed. */
export interface ResponseWriter {
  /** The events before the first token's own event (chat sends the role first). */
  streamStart(): string[];
  streamToken(text: string): string;
  streamFinish(reason: FinishReason): string;
  streamUsage(usage: Usage): string;
  plain(text: string, reason: FinishReason, usage: Usage): object;
}

interface Head {
  readonly id: string;
  readonly created: number;
  readonly model: string;
}

function head(prefix: string, model: string): Head {
  return { id: newId(prefix), created: Math.floor(Date.now() / 1000), model };
}

export function chatWriter(model: string, includeUsage: boolean): ResponseWriter {
  const h = head('chatcmpl-', model);
  const meta = { id: h.id, object: 'chat.completion.chunk', created: h.created, model, system_fingerprint: SYSTEM_FINGERPRINT };
  // OpenAI puts `"usage":null` on every chunk only when the client asked for the usage chunk.
  const tail = includeUsage ? ',"usage":null}' : '}';
  const chunk = (delta: object, finish: FinishReason | null): string =>
    sseEvent(`${JSON.stringify({ ...meta, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] }).slice(0, -1)}${tail}`);
  const tokenPrefix = `data: ${JSON.stringify(meta).slice(0, -1)},"choices":[{"index":0,"delta":{"content":`;
  const tokenSuffix = `},"logprobs":null,"finish_reason":null}]${tail}\n\n`;
  return {
    streamStart: () => [chunk({ role: 'assistant', content: '' }, null)],
    streamToken: (text) => `${tokenPrefix}${JSON.stringify(text)}${tokenSuffix}`,
    streamFinish: (reason) => chunk({}, reason),
    streamUsage: (usage) => sseEvent(JSON.stringify({ ...meta, choices: [], usage: chatUsage(usage) })),
    plain: (text, reason, usage) => ({
      id: h.id,
      object: 'chat.completion',
      created: h.created,
      model,
      system_fingerprint: SYSTEM_FINGERPRINT,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: text, refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: reason,
        },
      ],
      usage: chatUsage(usage),
    }),
  };
}

export function completionWriter(model: string, includeUsage: boolean): ResponseWriter {
  const h = head('cmpl-', model);
  const meta = { id: h.id, object: 'text_completion', created: h.created, model, system_fingerprint: SYSTEM_FINGERPRINT };
  const tail = includeUsage ? ',"usage":null}' : '}';
  const chunk = (text: string, finish: FinishReason | null): string =>
    sseEvent(`${JSON.stringify({ ...meta, choices: [{ text, index: 0, logprobs: null, finish_reason: finish }] }).slice(0, -1)}${tail}`);
  return {
    streamStart: () => [],
    streamToken: (text) => chunk(text, null),
    streamFinish: (reason) => chunk('', reason),
    streamUsage: (usage) => sseEvent(JSON.stringify({ ...meta, choices: [], usage })),
    plain: (text, reason, usage) => ({
      ...meta,
      choices: [{ text, index: 0, logprobs: null, finish_reason: reason }],
      usage,
    }),
  };
}

/** vLLM's error body (new style): `{"error":{message,type,param,code}}` with the status as code. */
export function vllmErrorBody(status: number, type: string, message: string, param: string | null = null): object {
  return { error: { message, type, param, code: status } };
}
