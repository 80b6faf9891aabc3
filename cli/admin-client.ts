import { request } from 'undici';
import { UsageError } from './run-command.js';

/** A small client of the admin API for the operator CLI. */
export class AdminClient {
  constructor(
    private readonly baseUrl: string,
    private readonly token: string | undefined,
  ) {}

  async call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    if (this.token === undefined) throw new UsageError('set SWITCHYARD_ADMIN_TOKEN (or --admin-token) to use the admin API');
    let res;
    try {
      res = await request(`${this.baseUrl.replace(/\/+$/, '')}/admin/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (err) {
      throw new Error(`cannot reach the gateway at ${this.baseUrl}: ${(err as Error).message}`, { cause: err });
    }
    const text = await res.body.text();
    const json = text === '' ? undefined : (JSON.parse(text) as unknown);
    if (res.statusCode >= 400) {
      const message = (json as { error?: { message?: string } } | undefined)?.error?.message ?? text;
      throw new Error(`admin API answered ${res.statusCode}: ${message}`);
    }
    return json as T;
  }
}
