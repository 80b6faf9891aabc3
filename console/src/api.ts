/**
 * The admin API (`/admin/v1`, the same one the CLI uses), called with the session cookie; every
 * state-changing call carries the session's CSRF token. Errors become sentences.
 */
let csrf: { header: string; token: string } | undefined;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }

  get sessionEnded(): boolean {
    return this.status === 401;
  }
}

export interface SessionInfo {
  readonly expires_at: string;
  readonly csrf_token: string;
  readonly csrf_header: string;
}

let onSessionEnded: () => void = () => undefined;
export function whenSessionEnds(listener: () => void): void {
  onSessionEnded = listener;
}

function remember(s: SessionInfo): SessionInfo {
  csrf = { header: s.csrf_header, token: s.csrf_token };
  return s;
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf !== undefined) headers[csrf.header] = csrf.token;
  let res: Response;
  try {
    res = await fetch(path, { method, headers, credentials: 'same-origin', ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  } catch {
    throw new ApiError(0, 'The gateway did not answer. Is it running, and is this machine connected to it?', undefined);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text === '' ? {} : JSON.parse(text);
  } catch {
    json = {};
  }
  if (!res.ok) {
    const err = (json as { error?: { message?: string; code?: string } }).error;
    const error = new ApiError(res.status, describe(res.status, err?.message), err?.code);
    if (res.status === 401 && !path.endsWith('/login')) onSessionEnded();
    throw error;
  }
  return json as T;
}

function describe(status: number, message: string | undefined): string {
  if (status === 401 && message === undefined) return 'Your session has ended; log in again.';
  if (status === 404 && message === undefined) return 'Not found: the admin API may be off on this gateway.';
  if (status >= 500 && message === undefined) return `The gateway had a problem (HTTP ${status}); try again.`;
  return message ?? `The request failed (HTTP ${status}).`;
}

export const session = {
  current: async (): Promise<SessionInfo> => remember(await call<SessionInfo>('GET', '/console/api/session')),
  login: async (token: string): Promise<SessionInfo> => remember(await call<SessionInfo>('POST', '/console/api/login', { token })),
  logout: async (): Promise<void> => {
    await call('POST', '/console/api/logout');
    csrf = undefined;
  },
};

export const admin = {
  get: <T>(path: string): Promise<T> => call<T>('GET', `/admin/v1${path}`),
  post: <T>(path: string, body?: unknown): Promise<T> => call<T>('POST', `/admin/v1${path}`, body),
  delete: <T>(path: string): Promise<T> => call<T>('DELETE', `/admin/v1${path}`),
};

export interface List<T> {
  readonly data: T[];
}
