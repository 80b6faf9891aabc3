import type { FastifyReply } from 'fastify';

/**
 * Takes the reply over from Fastify and starts a server-sent-events response: the headers set so
 * far (request id, rate-limit headers…) plus `extra`. The caller writes the events and ends it.
 */
export function openEventStream(reply: FastifyReply, extra: Record<string, string> = {}): void {
  reply.hijack();
  reply.raw.writeHead(200, {
    ...(reply.getHeaders() as Record<string, string>),
    ...extra,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
}
