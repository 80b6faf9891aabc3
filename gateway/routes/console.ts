import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../core/errors.js';
import { CSRF_HEADER, type ConsoleSessions } from '../plugins/console-session.js';

/**
 * Every console page: scripts and styles from this origin only, nothing inline, no frames, no
 * form posts elsewhere. Data comes from `/admin/v1` on the same origin.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
};

interface Asset {
  readonly type: string;
  readonly raw: Buffer;
  readonly gzip: Buffer;
  readonly br: Buffer;
}

const Login = Type.Object({ token: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false });

/** Where `npm run build` writes the console: `dist/console/` beside `dist/gateway/`. */
export function defaultConsoleDir(): string {
  const built = fileURLToPath(new URL('../../console/', import.meta.url));
  // Run from the TypeScript sources (tests), the built console is under dist/.
  return existsSync(join(built, 'index.html')) ? built : fileURLToPath(new URL('../../dist/console/', import.meta.url));
}

/**
 * `/console`: the operator console's files and its session endpoints (`/console/api/login`,
 * `/session`, `/logout`). Off (a page saying so) when the admin API is off. The files are read
 * and compressed once, at start-up.
 */
export function consoleRoutes(app: FastifyInstance, sessions: ConsoleSessions | undefined, dir = defaultConsoleDir()): void {
  const assets = loadAssets(dir);
  const securityHeaders = (reply: FastifyReply): FastifyReply =>
    reply
      .header('content-security-policy', CONSOLE_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      .header('cross-origin-opener-policy', 'same-origin');

  const page = (reply: FastifyReply, status: number, title: string, text: string): FastifyReply =>
    securityHeaders(reply)
      .code(status)
      .header('content-type', 'text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(`<!doctype html><html lang="en"><meta charset="utf-8"><title>${title}</title><h1>${title}</h1><p>${text}</p></html>\n`);

  const index = (request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (sessions === undefined) {
      return page(reply, 404, 'Switchyard console is off', 'The admin API is off on this gateway: set SWITCHYARD_ADMIN_TOKEN and restart it to use the console.');
    }
    const html = assets.get('index.html');
    if (html === undefined) return page(reply, 503, 'Switchyard console is not built', 'This gateway has no console files: run <code>npm run build</code>.');
    return send(request, securityHeaders(reply).header('cache-control', 'no-cache'), html);
  };
  app.get('/console', index);
  app.get('/console/', index);
  app.get('/console/assets/*', (request, reply) => {
    const name = `assets/${(request.params as { '*': string })['*']}`;
    const asset = sessions === undefined ? undefined : assets.get(name);
    if (asset === undefined) throw new SwitchyardError(ErrorCode.NotFound, `No console file '${name}'.`);
    // Names carry a content hash (esbuild), so a browser may keep them forever.
    return send(request, securityHeaders(reply).header('cache-control', 'public, max-age=31536000, immutable'), asset);
  });

  if (sessions === undefined) return;
  app.post('/console/api/login', { schema: { body: Login } }, async (request, reply) => {
    const { session, cookie } = sessions.login((request.body as { token: string }).token, request.ip);
    sessions.setCookie(reply, request, cookie, Math.floor(sessions.ttlMs / 1000));
    return reply.header('cache-control', 'no-store').send(sessionJson(session));
  });
  app.get('/console/api/session', async (request, reply) => {
    const session = sessions.authorise(request);
    return reply.header('cache-control', 'no-store').send(sessionJson(session));
  });
  app.post('/console/api/logout', async (request, reply) => {
    const session = sessions.authorise(request);
    sessions.logout(session);
    sessions.setCookie(reply, request, '', 0);
    return reply.header('cache-control', 'no-store').send({ object: 'console.session', logged_out: true });
  });
}

function sessionJson(s: { expiresAt: number; csrf: string }): Record<string, unknown> {
  return { object: 'console.session', expires_at: new Date(s.expiresAt).toISOString(), csrf_token: s.csrf, csrf_header: CSRF_HEADER };
}

function send(request: FastifyRequest, reply: FastifyReply, asset: Asset): FastifyReply {
  const accept = request.headers['accept-encoding'] ?? '';
  reply.header('content-type', asset.type).header('vary', 'accept-encoding');
  if (/\bbr\b/.test(accept)) return reply.header('content-encoding', 'br').send(asset.br);
  if (/\bgzip\b/.test(accept)) return reply.header('content-encoding', 'gzip').send(asset.gzip);
  return reply.send(asset.raw);
}

function loadAssets(dir: string): Map<string, Asset> {
  const out = new Map<string, Asset>();
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const type = TYPES[extname(entry)];
    if (type === undefined) continue;
    const raw = readFileSync(join(dir, entry));
    out.set(entry.split('\\').join('/'), { type, raw, gzip: gzipSync(raw), br: brotliCompressSync(raw) });
  }
  return out;
}
