import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../core/errors.js';

export const SESSION_COOKIE = 'sy_console';
/** The header a cookie-authenticated state-changing request must carry (the session's CSRF token). */
export const CSRF_HEADER = 'x-switchyard-csrf';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface ConsoleSessionOptions {
  /** The admin token: the only credential that opens a session, and the key sessions are signed with. */
  readonly adminToken: string;
  /** How long a session lasts from login, ms. */
  readonly ttlMs?: number;
  /** Failed logins allowed per client address per window before 429. */
  readonly loginAttempts?: number;
  readonly loginWindowMs?: number;
  readonly now?: () => number;
}

export interface Session {
  readonly id: string;
  readonly expiresAt: number;
  /** Sent back in `x-switchyard-csrf` on every state-changing request. */
  readonly csrf: string;
}

/**
 * Console sessions, exchanged for the admin token at login. A session is a signed cookie
 * (`<id>.<expiry>.<HMAC>`, keyed by a hash of the admin token), so every gateway replica that
 * shares the admin token accepts it without shared state, and changing the token ends every
 * session. Logout also revokes the id on this replica until it would have expired.
 *
 * CSRF: the cookie is `SameSite=Strict`, and a cookie-authenticated request that changes state
 * must also carry the session's CSRF token (derived from the id; a page of another origin cannot
 * read it) in `x-switchyard-csrf`, and an `Origin`, when the browser sends one, naming this host.
 * Requests with `Authorization: Bearer` (the CLI) are judged by the token alone.
 *
 * Login attempts: each client address gets `loginAttempts` failures per window; then 429.
 */
export class ConsoleSessions {
  readonly ttlMs: number;
  private readonly key: Buffer;
  private readonly tokenHash: Buffer;
  private readonly now: () => number;
  private readonly revoked = new Map<string, number>();
  private readonly failures = new Map<string, { count: number; resetAt: number }>();
  private readonly attempts: number;
  private readonly windowMs: number;

  constructor(opts: ConsoleSessionOptions) {
    this.ttlMs = opts.ttlMs ?? 8 * 3600_000;
    this.key = createHash('sha256').update(`switchyard-console-session\0${opts.adminToken}`).digest();
    this.tokenHash = createHash('sha256').update(opts.adminToken).digest();
    this.now = opts.now ?? Date.now;
    this.attempts = opts.loginAttempts ?? 10;
    this.windowMs = opts.loginWindowMs ?? 60_000;
  }

  /** Whether `given` is the admin token (constant time). */
  isAdminToken(given: string): boolean {
    return timingSafeEqual(createHash('sha256').update(given).digest(), this.tokenHash);
  }

  /**
   * Opens a session for the token, or throws: 429 while the address is over its failures, 401 on
   * a wrong token (which counts as a failure).
   */
  login(token: string, address: string): { session: Session; cookie: string } {
    const now = this.now();
    const seen = this.failures.get(address);
    if (seen !== undefined && seen.resetAt <= now) this.failures.delete(address);
    const current = this.failures.get(address);
    if (current !== undefined && current.count >= this.attempts) {
      throw new SwitchyardError(ErrorCode.RateLimited, 'Too many failed logins from this address; wait a minute and try again.', {
        retryAfterSeconds: Math.max(1, Math.ceil((current.resetAt - now) / 1000)),
      });
    }
    if (!this.isAdminToken(token)) {
      if (current === undefined) this.failures.set(address, { count: 1, resetAt: now + this.windowMs });
      else current.count += 1;
      this.sweep(now);
      throw new SwitchyardError(ErrorCode.InvalidApiKey, 'That is not the admin token (SWITCHYARD_ADMIN_TOKEN).', { type: 'authentication_error' });
    }
    const id = randomBytes(18).toString('base64url');
    const expiresAt = now + this.ttlMs;
    const cookie = `${id}.${expiresAt.toString(36)}.${this.sign(`${id}.${expiresAt.toString(36)}`)}`;
    return { session: { id, expiresAt, csrf: this.csrfFor(id) }, cookie };
  }

  /** The session a cookie value names, if it is genuine, unexpired and not logged out. */
  verify(cookie: string | undefined): Session | undefined {
    if (cookie === undefined) return undefined;
    const [id, expiry, mac] = cookie.split('.');
    if (id === undefined || expiry === undefined || mac === undefined) return undefined;
    const want = Buffer.from(this.sign(`${id}.${expiry}`));
    const got = Buffer.from(mac);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return undefined;
    const expiresAt = parseInt(expiry, 36);
    if (!(expiresAt > this.now()) || this.revoked.has(id)) return undefined;
    return { id, expiresAt, csrf: this.csrfFor(id) };
  }

  logout(session: Session): void {
    this.revoked.set(session.id, session.expiresAt);
    this.sweep(this.now());
  }

  /** The session of a request (its cookie), if any. */
  fromRequest(request: FastifyRequest): Session | undefined {
    return this.verify(readCookie(request.headers.cookie, SESSION_COOKIE));
  }

  /**
   * Admits a cookie-authenticated request or throws: no valid session → 401 saying the session
   * expired; a state-changing request without the CSRF token or from another origin → 403.
   */
  authorise(request: FastifyRequest): Session {
    const session = this.fromRequest(request);
    if (session === undefined) {
      throw new SwitchyardError(ErrorCode.InvalidApiKey, 'Your console session has expired or was ended; log in again.', {
        type: 'authentication_error',
      });
    }
    if (!SAFE_METHODS.has(request.method)) {
      const given = request.headers[CSRF_HEADER];
      const ok = typeof given === 'string' && given.length === session.csrf.length && timingSafeEqual(Buffer.from(given), Buffer.from(session.csrf));
      if (!ok || !sameOrigin(request)) {
        throw new SwitchyardError(ErrorCode.PermissionDenied, 'This request lacks the console session\'s CSRF token or comes from another site.');
      }
    }
    return session;
  }

  /** `Set-Cookie` for a session; `Secure` when the request came over TLS. */
  setCookie(reply: FastifyReply, request: FastifyRequest, value: string, maxAgeSeconds: number): void {
    const secure = request.protocol === 'https' ? '; Secure' : '';
    reply.header('set-cookie', `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure}`);
  }

  private csrfFor(id: string): string {
    return this.sign(`csrf.${id}`);
  }

  private sign(value: string): string {
    return createHmac('sha256', this.key).update(value).digest('base64url');
  }

  private sweep(now: number): void {
    for (const [id, until] of this.revoked) if (until <= now) this.revoked.delete(id);
    for (const [address, f] of this.failures) if (f.resetAt <= now) this.failures.delete(address);
  }
}

/**
 * `/admin/v1/*`: the admin token as a bearer token (the CLI), else a console session cookie
 * (with CSRF checks for state-changing requests). A request that carries an Authorization header
 * is judged by it alone, so a wrong token is never rescued by a cookie.
 */
export function adminOrSession(request: FastifyRequest, sessions: ConsoleSessions | undefined, bearerCheck: () => void): void {
  if (sessions === undefined || request.headers.authorization !== undefined || request.headers.cookie === undefined) return bearerCheck();
  if (readCookie(request.headers.cookie, SESSION_COOKIE) === undefined) return bearerCheck();
  sessions.authorise(request);
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function sameOrigin(request: FastifyRequest): boolean {
  const origin = request.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === request.headers.host;
  } catch {
    return false;
  }
}
