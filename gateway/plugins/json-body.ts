import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../core/errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route reads a JSON body but declares no body schema: an empty body is refused. */
    jsonBodyRequired?: boolean;
  }
}

/** After a 413, at most this much more of the refused body is read (and thrown away)… */
const DISCARD_MAX_BYTES = 128 * 1024 * 1024;
/** …for at most this long; then the connection is cut. */
const DISCARD_MAX_MS = 30_000;

/**
 * `application/json` bodies: kept as the exact bytes the client sent (forwarded unchanged when
 * nothing needs rewriting), refused with a 400 when they are not well-formed UTF-8 JSON, so that an
 * engine never sees what it would answer with a 500 (a healthy node must not look broken because
 * of one client). Routes without a body take an empty one: clients send the content type on every call.
 */
export function jsonBody(app: FastifyInstance): void {
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const buf = body as Buffer;
    request.rawBody = buf;
    try {
      done(null, parseJsonBody(buf, needsBody(request)));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
}

function needsBody(request: FastifyRequest): boolean {
  return request.routeOptions.schema?.body !== undefined || request.routeOptions.config.jsonBodyRequired === true;
}

/** The parsed body (`undefined` for an allowed empty one); throws `invalid_json` 400s. */
export function parseJsonBody(buf: Buffer, required: boolean): unknown {
  if (buf.length === 0) {
    if (!required) return undefined;
    throw new SwitchyardError(ErrorCode.InvalidJson, 'Request body is empty; expected a JSON object.');
  }
  if (!isUtf8(buf)) throw new SwitchyardError(ErrorCode.InvalidJson, 'Request body is not valid UTF-8; JSON must be sent as UTF-8.');
  const text = buf.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new SwitchyardError(ErrorCode.InvalidJson, 'Request body is not valid JSON.');
  }
  // `"\ud800"` is well-formed UTF-8 but names half a character, which cannot be encoded (engines
  // refuse it). Only bodies that escape a surrogate are walked.
  if ((text.includes('\\ud') || text.includes('\\uD')) && hasLoneSurrogate(value)) {
    throw new SwitchyardError(ErrorCode.InvalidJson, 'Request body has a string with an unpaired surrogate (\\ud800-\\udfff): not valid Unicode.');
  }
  return value;
}

const LONE_SURROGATE = /\p{Cs}/u;

function hasLoneSurrogate(value: unknown): boolean {
  // A stack, not recursion: the depth is the client's choice.
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (LONE_SURROGATE.test(v)) return true;
    } else if (typeof v === 'object' && v !== null) {
      for (const [k, child] of Object.entries(v)) {
        if (LONE_SURROGATE.test(k)) return true;
        stack.push(child);
      }
    }
  }
  return false;
}

/**
 * After a 413 sent before the body was read: keeps reading (and discarding) what the client is
 * still sending, so that it gets to read the answer. Closing at once would reset the connection
 * under a client still writing, and it would see EPIPE/ECONNRESET instead of the 413. The reply
 * must then not say `connection: close` (Node would close the socket as soon as the reply is out);
 * clients that stop sending on an early answer (undici, curl) close the connection themselves.
 * Bounded: past DISCARD_MAX_BYTES or DISCARD_MAX_MS the connection is cut.
 */
export function discardRestOfBody(req: IncomingMessage, maxBytes = DISCARD_MAX_BYTES, maxMs = DISCARD_MAX_MS): boolean {
  if (req.complete || req.destroyed) return false;
  let seen = 0;
  const cut = (): void => {
    clearTimeout(timer);
    req.socket.destroy();
  };
  const timer = setTimeout(cut, maxMs).unref();
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > maxBytes) cut();
  });
  req.once('end', () => clearTimeout(timer));
  req.once('close', () => clearTimeout(timer));
  req.resume();
  return true;
}
