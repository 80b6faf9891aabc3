import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RequestCancel } from '../../gateway/upstream/cancel-signal.js';
import { requestWhole, ResponseCutError } from '../../gateway/upstream/whole-request.js';

/** requestWhole against a real HTTP server over loopback, one behaviour per path. */
let server: Server;
let pool: Pool;
let closedOnServer: Promise<unknown> | undefined;
const big = 'x'.repeat(300_000);

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    if (req.url === '/ok') return void res.writeHead(200, { 'content-type': 'application/json', 'retry-after': '3' }).end('{"ok":true}');
    if (req.url === '/big') {
      // Several chunks, several writes.
      res.writeHead(200, { 'content-type': 'text/plain' });
      for (let i = 0; i < big.length; i += 50_000) res.write(big.slice(i, i + 50_000));
      return void res.end();
    }
    if (req.url === '/cut') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"partial":');
      return void setTimeout(() => req.socket.destroy(), 20);
    }
    if (req.url === '/refuse') return void req.socket.destroy();
    // '/hang': never answers
    closedOnServer = once(req.socket, 'close');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  pool = new Pool(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
});

afterAll(async () => {
  await pool.close();
  server.close();
});

const get = (path: string, signal = new RequestCancel()) => requestWhole(pool, { path, method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } }, signal);

describe('requestWhole', () => {
  it('answers the status, the parsed headers and the whole body', async () => {
    const res = await get('/ok');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['retry-after']).toBe('3');
    expect(res.body.toString()).toBe('{"ok":true}');
    expect((await get('/big')).body.toString()).toBe(big);
  });

  it('a connection cut before the answer is the connection error; after it started, ResponseCutError', async () => {
    const before = await get('/refuse').catch((e: unknown) => e);
    expect(before).toBeInstanceOf(Error);
    expect(before).not.toBeInstanceOf(ResponseCutError);
    const after = await get('/cut').catch((e: unknown) => e);
    expect(after).toBeInstanceOf(ResponseCutError);
    expect((after as Error).cause).toBeInstanceOf(Error);
  });

  it('the cancel signal aborts a request that waits for its answer, and the server sees it go', async () => {
    const cancel = new RequestCancel();
    const pending = get('/hang', cancel);
    await new Promise((r) => setTimeout(r, 50));
    cancel.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    await closedOnServer;
    await expect(get('/ok', cancel)).rejects.toMatchObject({ name: 'AbortError' });
  });
});
