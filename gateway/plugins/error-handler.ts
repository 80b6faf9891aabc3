import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import { ErrorCode, SwitchyardError, toOpenAIErrorBody } from '../../core/errors.js';
import { isRedisUnavailable } from '../../core/redis-connection.js';
import { discardRestOfBody } from './json-body.js';
import { validationError } from './validation.js';

/**
 * The one place errors become responses: every error leaves in OpenAI's shape with the status
 * the SDKs expect, `retry-after` where waiting helps, and the request id (set in onRequest).
 */
export function errorHandling(app: FastifyInstance): void {
  app.setErrorHandler((raw: FastifyError | SwitchyardError | Error, request, reply) => {
    const err = toSwitchyardError(raw, request);
    // Fastify asked for `connection: close`, which would reset the socket under a client still
    // sending the body: read the rest instead (bounded) so that it reads the 413.
    if (err.code === ErrorCode.PayloadTooLarge && discardRestOfBody(request.raw)) reply.removeHeader('connection');
    if (request.call !== undefined) request.call.errorCode = err.code;
    if (err.status === 499) {
      // The client left; there is nobody to answer.
      return reply.code(499).send();
    }
    if (err.status >= 500) request.log.error({ reqId: request.id, err: raw, code: err.code }, 'request failed');
    if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds));
    return reply.code(err.status).send(toOpenAIErrorBody(err));
  });

  app.setNotFoundHandler((request, reply) => {
    const err = new SwitchyardError(ErrorCode.NotFound, `Unknown request URL: ${request.method} ${request.url.split('?')[0] ?? ''}.`);
    return reply.code(404).send(toOpenAIErrorBody(err));
  });
}

function toSwitchyardError(err: FastifyError | SwitchyardError | Error, request: FastifyRequest): SwitchyardError {
  if (err instanceof SwitchyardError) return err;
  const fe = err as FastifyError;
  if (fe.validation !== undefined) {
    const part = fe.validationContext;
    const data = part === 'querystring' ? request.query : part === 'params' ? request.params : part === 'headers' ? request.headers : request.body;
    return validationError(fe.validation, part, data);
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new SwitchyardError(ErrorCode.PayloadTooLarge, 'Request body is too large.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new SwitchyardError(ErrorCode.InvalidRequest, 'Content-Type must be application/json.', { status: 415 });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new SwitchyardError(ErrorCode.InvalidJson, 'Request body is empty; expected a JSON object.');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new SwitchyardError(ErrorCode.InvalidJson, 'Request body is not valid JSON.');
  }
  if (fe.statusCode !== undefined && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new SwitchyardError(ErrorCode.InvalidRequest, fe.message, { status: fe.statusCode });
  }
  // Redis restarting or failing over: a short wait helps, unlike a bug.
  if (isRedisUnavailable(err)) return new SwitchyardError(ErrorCode.StoreUnavailable, 'The gateway cannot reach its state store right now; retry shortly.', { cause: err, retryAfterSeconds: 1 });
  return new SwitchyardError(ErrorCode.Internal, 'The gateway had an internal error.', { cause: err });
}
