import type { FastifyRequest } from 'fastify';

declare module 'fastify' {
  interface FastifyRequest {
    /** The body exactly as the client sent it; forwarded unchanged when nothing needs rewriting. */
    rawBody: Buffer | undefined;
  }
}

export function rawBodyOf(request: FastifyRequest): Buffer {
  return request.rawBody ?? Buffer.alloc(0);
}
