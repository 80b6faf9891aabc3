/**
 * Every error a client can see. Branch on `code`, never on messages. The HTTP status and the
 * OpenAI `type` follow from the code, so a throw site only says what went wrong.
 */
export const ErrorCode = {
  InvalidRequest: 'invalid_request',
  InvalidJson: 'invalid_json',
  InvalidApiKey: 'invalid_api_key',
  PermissionDenied: 'permission_denied',
  ModelNotFound: 'model_not_found',
  ContextLengthExceeded: 'context_length_exceeded',
  NotFound: 'not_found',
  RegionNotAllowed: 'region_not_allowed',
  PayloadTooLarge: 'payload_too_large',
  RateLimited: 'rate_limit_exceeded',
  NoCapacity: 'no_capacity',
  NoHealthyNode: 'no_healthy_node',
  NoWorker: 'no_worker',
  UpstreamError: 'upstream_error',
  UpstreamTimeout: 'upstream_timeout',
  UpstreamUnavailable: 'upstream_unavailable',
  ShuttingDown: 'shutting_down',
  StoreUnavailable: 'store_unavailable',
  Internal: 'internal_error',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** OpenAI's error `type` values, as the SDKs and clients branch on them. */
export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'requests'
  | 'tokens'
  | 'server_error';

interface CodeInfo {
  readonly status: number;
  readonly type: OpenAIErrorType;
}

const CODE_INFO: Record<ErrorCode, CodeInfo> = {
  invalid_request: { status: 400, type: 'invalid_request_error' },
  invalid_json: { status: 400, type: 'invalid_request_error' },
  invalid_api_key: { status: 401, type: 'invalid_request_error' },
  permission_denied: { status: 403, type: 'permission_error' },
  model_not_found: { status: 404, type: 'invalid_request_error' },
  context_length_exceeded: { status: 400, type: 'invalid_request_error' },
  not_found: { status: 404, type: 'invalid_request_error' },
  region_not_allowed: { status: 403, type: 'permission_error' },
  payload_too_large: { status: 413, type: 'invalid_request_error' },
  rate_limit_exceeded: { status: 429, type: 'rate_limit_error' },
  no_capacity: { status: 503, type: 'server_error' },
  no_healthy_node: { status: 503, type: 'server_error' },
  no_worker: { status: 503, type: 'server_error' },
  upstream_error: { status: 502, type: 'server_error' },
  upstream_timeout: { status: 504, type: 'server_error' },
  upstream_unavailable: { status: 503, type: 'server_error' },
  shutting_down: { status: 503, type: 'server_error' },
  store_unavailable: { status: 503, type: 'server_error' },
  internal_error: { status: 500, type: 'server_error' },
};

export interface SwitchyardErrorOptions extends ErrorOptions {
  /** The request field at fault, as OpenAI's `param`. */
  readonly param?: string | null;
  /** Overrides the status implied by the code (an upstream 422 stays 422, say). */
  readonly status?: number;
  /** Seconds a client should wait before retrying; becomes `retry-after`. */
  readonly retryAfterSeconds?: number;
  /** Overrides the OpenAI `type` implied by the code. */
  readonly type?: OpenAIErrorType;
}

export class SwitchyardError extends Error {
  readonly status: number;
  readonly type: OpenAIErrorType;
  readonly param: string | null;
  readonly retryAfterSeconds: number | undefined;

  constructor(
    readonly code: ErrorCode,
    message: string,
    opts: SwitchyardErrorOptions = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SwitchyardError';
    const info = CODE_INFO[code];
    this.status = opts.status ?? info.status;
    this.type = opts.type ?? info.type;
    this.param = opts.param ?? null;
    this.retryAfterSeconds = opts.retryAfterSeconds;
  }
}

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** The body a client sees. 5xx messages stay generic unless the error was built to be shown. */
export function toOpenAIErrorBody(err: SwitchyardError): OpenAIErrorBody {
  return { error: { message: err.message, type: err.type, param: err.param, code: err.code } };
}

export function isSwitchyardError(err: unknown): err is SwitchyardError {
  return err instanceof SwitchyardError;
}

/** Every code with its status, for docs/errors.md and tests. */
export function describeErrorCodes(): ReadonlyArray<{ code: ErrorCode } & CodeInfo> {
  return (Object.keys(CODE_INFO) as ErrorCode[]).map((code) => ({ code, ...CODE_INFO[code] }));
}
