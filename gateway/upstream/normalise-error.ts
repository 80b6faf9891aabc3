import { ErrorCode, SwitchyardError, type OpenAIErrorType } from '../../core/errors.js';
import type { EngineKind } from '../../core/config/regions-schema.js';

/**
 * Turns an engine's error answer into a SwitchyardError carrying OpenAI's shape. Engines disagree:
 * - vLLM (new), llama.cpp, Ollama: `{"error": {"message", "type", "code": 404 | null, ...}}`
 * - vLLM (old), SGLang:            `{"object": "error", "message", "type", "code": 400}`
 * - TGI:                           `{"error": "text", "error_type": "validation"}`
 * The upstream status is kept for client errors (a TGI 422 stays 422); the engine's own `type`
 * strings (`NotFoundError`, `exceed_context_size_error`) become OpenAI's. 5xx details stay in the
 * log, never in the client's message.
 */
export interface NormalisedUpstreamError {
  readonly error: SwitchyardError;
  /** The engine's own message, for the log. */
  readonly detail: string;
}

export function normaliseUpstreamError(status: number, body: string, engine: EngineKind): NormalisedUpstreamError {
  const parsed = parseEngineError(body);
  const detail = parsed.message ?? body.slice(0, 500);
  const message = parsed.message ?? `The model server answered HTTP ${status}.`;

  if (status >= 500 || status === 401 || status === 403) {
    // The client cannot fix these: the node is broken or misconfigured (its credentials are ours).
    const code = status === 503 ? ErrorCode.UpstreamUnavailable : status === 504 ? ErrorCode.UpstreamTimeout : ErrorCode.UpstreamError;
    const shown = status === 401 || status === 403 ? 'The model server refused the gateway\'s credentials.' : `The model server failed (HTTP ${status}).`;
    return { error: new SwitchyardError(code, `${shown} (engine: ${engine})`), detail };
  }
  if (status === 429) {
    return { error: new SwitchyardError(ErrorCode.UpstreamUnavailable, 'The model server is overloaded; retry later.', { retryAfterSeconds: 1 }), detail };
  }
  if (status === 404 && (parsed.param === 'model' || /model/i.test(message))) {
    return { error: new SwitchyardError(ErrorCode.ModelNotFound, message, { param: 'model' }), detail };
  }
  if (/context (length|size|window)|maximum context|must be <= \d+/i.test(message)) {
    return { error: new SwitchyardError(ErrorCode.ContextLengthExceeded, message, { status, param: 'messages' }), detail };
  }
  const type: OpenAIErrorType = status === 404 ? 'not_found_error' : 'invalid_request_error';
  const code = status === 404 ? ErrorCode.NotFound : ErrorCode.InvalidRequest;
  return { error: new SwitchyardError(code, message, { status, type, param: parsed.param ?? null }), detail };
}

interface EngineError {
  readonly message: string | undefined;
  readonly param: string | undefined;
}

function parseEngineError(body: string): EngineError {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return { message: undefined, param: undefined };
  }
  if (!isRecord(json)) return { message: undefined, param: undefined };
  const inner = json['error'];
  if (isRecord(inner)) return { message: str(inner['message']), param: str(inner['param']) };
  if (typeof inner === 'string') return { message: inner, param: undefined }; // TGI
  return { message: str(json['message']), param: str(json['param']) }; // vLLM old, SGLang
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}
