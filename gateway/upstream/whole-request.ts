import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import type { CancelSignal } from './cancel-signal.js';

/** An upstream answer read whole. */
export interface WholeResponse {
  readonly statusCode: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** The connection failed after the response had started: the answer is incomplete. */
export class ResponseCutError extends Error {
  override readonly name = 'ResponseCutError';
}

/**
 * One request whose answer is read whole, through undici's `dispatch` with a handler of our own:
 * no Readable, body mixin or AbortSignal per call as with `request` (in one process against the
 * canned upstream: about half the client CPU per request). Rejects with the connection's error
 * before the response starts, and with ResponseCutError (the error as its cause) after.
 */
export function requestWhole(dispatcher: Dispatcher, opts: Dispatcher.DispatchOptions, signal: CancelSignal): Promise<WholeResponse> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    let controller: Dispatcher.DispatchController | undefined;
    let statusCode = 0;
    let headers: IncomingHttpHeaders = {};
    let started = false;
    const chunks: Buffer[] = [];
    let size = 0;
    const onAbort = (): void => controller?.abort(signal.reason as Error);
    signal.addEventListener('abort', onAbort);
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        // Aborted while the request waited for a connection.
        if (signal.aborted) c.abort(signal.reason as Error);
      },
      onResponseStart(_c, status, h) {
        started = true;
        statusCode = status;
        headers = h as IncomingHttpHeaders;
      },
      onResponseData(_c, chunk) {
        chunks.push(chunk);
        size += chunk.length;
      },
      onResponseEnd() {
        signal.removeEventListener('abort', onAbort);
        resolve({ statusCode, headers, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) });
      },
      onResponseError(_c, error) {
        signal.removeEventListener('abort', onAbort);
        reject(started && !signal.aborted ? new ResponseCutError('the response was cut short', { cause: error }) : error);
      },
    };
    try {
      dispatcher.dispatch(opts, handler);
    } catch (error) {
      signal.removeEventListener('abort', onAbort);
      reject(error);
    }
  });
}
