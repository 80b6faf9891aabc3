import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { SimRequestError } from './sim-requests.js';
import { vllmErrorBody } from './sim-wire.js';

/** Small `node:http` helpers; no framework, so an idle stream costs a socket and a closure. */

/** Larger bodies are answered 413: nothing the simulator serves needs more. */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, contentType: string, text: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'content-length': 0 });
  res.end();
}

export function sendVllmError(
  res: ServerResponse,
  status: number,
  type: string,
  message: string,
  param: string | null = null,
  headers: OutgoingHttpHeaders = {},
): void {
  sendJson(res, status, vllmErrorBody(status, type, message, param), headers);
}

/** FastAPI's body for an unknown route or method, which is what vLLM answers there. */
export function sendDetail(res: ServerResponse, status: 404 | 405, detail: string): void {
  sendJson(res, status, { detail });
}

/** Reads and parses a JSON body; a bad body is a `SimRequestError` (400 or 413). */
export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      throw new SimRequestError(413, 'BadRequestError', `Request body exceeds ${MAX_BODY_BYTES} bytes.`);
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err: unknown) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new SimRequestError(400, 'BadRequestError', `Invalid JSON in request body: ${reason}`);
  }
}

/**
 * Tracks whether a response ended on our terms. `onAbort` runs once if the connection closes
 * before `settle()` was called: the client went away (or a scripted drop did not settle first).
 */
export interface CloseWatch {
  /** True once the connection closed, whoever closed it. */
  readonly closed: boolean;
  onAbort: () => void;
  /** Marks the response as ended by the simulator (answer sent, or a deliberate drop). */
  settle(): void;
}

export function watchClose(res: ServerResponse, onAbort: () => void): CloseWatch {
  let settled = false;
  let closed = false;
  const watch: CloseWatch = {
    get closed() {
      return closed;
    },
    onAbort,
    settle() {
      settled = true;
    },
  };
  res.once('close', () => {
    closed = true;
    if (!settled && !res.writableFinished) {
      settled = true;
      watch.onAbort();
    }
  });
  return watch;
}
