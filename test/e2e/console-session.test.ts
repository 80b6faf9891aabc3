import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { errorHandling } from '../../gateway/plugins/error-handler.js';
import { adminAuth } from '../../gateway/plugins/auth.js';
import { ConsoleSessions, adminOrSession } from '../../gateway/plugins/console-session.js';
import { consoleRoutes } from '../../gateway/routes/console.js';

/**
 * Console sessions in process (the browser suite, console.test.ts, drives the same code through
 * chromium): expiry, forged and tampered cookies, a bearer token judged alone, the console off
 * without an admin token.
 */
const TOKEN = 'session-test-token';
let app: FastifyInstance | undefined;

async function build(sessions: ConsoleSessions | undefined): Promise<FastifyInstance> {
  app = Fastify();
  errorHandling(app);
  consoleRoutes(app, sessions);
  await app.register(
    async (admin) => {
      admin.addHook('onRequest', async (request) => adminOrSession(request, sessions, () => adminAuth(request, TOKEN)));
      admin.get('/thing', async () => ({ ok: true }));
      admin.post('/thing', async () => ({ ok: true }));
    },
    { prefix: '/admin/v1' },
  );
  return app;
}

afterEach(async () => {
  await app?.close();
  app = undefined;
});

describe('console sessions', () => {
  it('expire after their lifetime, and a tampered or foreign cookie is refused', async () => {
    let now = 1_000_000;
    const sessions = new ConsoleSessions({ adminToken: TOKEN, ttlMs: 60_000, now: () => now });
    const a = await build(sessions);
    const login = await a.inject({ method: 'POST', url: '/console/api/login', payload: { token: TOKEN } });
    expect(login.statusCode).toBe(200);
    const setCookie = String(login.headers['set-cookie']);
    expect(setCookie).toMatch(/^sy_console=[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=60$/);
    const value = /^sy_console=([^;]+)/.exec(setCookie)?.[1] ?? '';
    const get = (cookie: string) => a.inject({ method: 'GET', url: '/admin/v1/thing', headers: { cookie: `sy_console=${cookie}` } });
    expect((await get(value)).statusCode).toBe(200);
    const [id, expiry, mac] = value.split('.') as [string, string, string];
    expect((await get(`${id}.${(parseInt(expiry, 36) + 3_600_000).toString(36)}.${mac}`)).statusCode).toBe(401);
    const other = new ConsoleSessions({ adminToken: 'another-token' }).login('another-token', 'x').cookie;
    expect((await get(other)).statusCode).toBe(401);
    now += 60_001;
    const expired = await get(value);
    expect(expired.statusCode).toBe(401);
    expect(expired.json().error.message).toMatch(/session has expired/);
  });

  it('a request with a bearer token is judged by the token alone, never rescued by a cookie', async () => {
    const sessions = new ConsoleSessions({ adminToken: TOKEN });
    const a = await build(sessions);
    const { cookie } = sessions.login(TOKEN, 'x');
    const res = await a.inject({ method: 'GET', url: '/admin/v1/thing', headers: { cookie: `sy_console=${cookie}`, authorization: 'Bearer wrong' } });
    expect(res.statusCode).toBe(401);
    const ok = await a.inject({ method: 'POST', url: '/admin/v1/thing', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.statusCode).toBe(200);
  });

  it('the console is off, in words, when the admin API is off', async () => {
    const a = await build(undefined);
    const res = await a.inject({ method: 'GET', url: '/console' });
    expect(res.statusCode).toBe(404);
    expect(res.body).toContain('set SWITCHYARD_ADMIN_TOKEN');
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    expect((await a.inject({ method: 'POST', url: '/console/api/login', payload: { token: TOKEN } })).statusCode).toBe(404);
  });
});
