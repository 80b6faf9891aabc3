import { once } from 'node:events';
import { createServer } from 'node:http';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { RequestCancel, sleepUnlessCancelled, undiciSignal } from '../../gateway/upstream/cancel-signal.js';

describe('RequestCancel', () => {
  it('runs each listener once, in order, on the first abort; a removed one never', () => {
    const c = new RequestCancel();
    const seen: string[] = [];
    const b = (): void => void seen.push('b');
    c.addEventListener('abort', () => seen.push('a'));
    c.addEventListener('abort', b);
    c.addEventListener('abort', () => seen.push('c'));
    c.removeEventListener('abort', b);
    c.abort();
    c.abort();
    expect(seen).toEqual(['a', 'c']);
    expect(c.aborted).toBe(true);
    expect((c.reason as Error).name).toBe('AbortError');
  });

  it('a linked signal aborts with its parent, and alone without aborting the parent', () => {
    const parent = new RequestCancel();
    const child = RequestCancel.linkedTo(parent);
    const sibling = RequestCancel.linkedTo(parent);
    sibling.abort();
    expect(parent.aborted).toBe(false);
    expect(child.aborted).toBe(false);
    parent.abort(new Error('gone'));
    expect(child.aborted).toBe(true);
    expect((child.reason as Error).message).toBe('gone');
    const late = RequestCancel.linkedTo(parent);
    expect(late.aborted).toBe(true);
    // An AbortSignal parent works too (background responses pass their own).
    const ac = new AbortController();
    const linked = RequestCancel.linkedTo(ac.signal);
    ac.abort();
    expect(linked.aborted).toBe(true);
  });

  it('cuts a sleep short', async () => {
    const c = new RequestCancel();
    const slept = sleepUnlessCancelled(60_000, c);
    setTimeout(() => c.abort(), 10);
    await expect(slept).rejects.toMatchObject({ name: 'AbortError' });
    await expect(sleepUnlessCancelled(1, new RequestCancel())).resolves.toBeUndefined();
  });

  it('aborts an undici request waiting for its answer, and the server sees the connection go', async () => {
    let closed: Promise<unknown> | undefined;
    const server = createServer((req) => {
      closed = once(req.socket, 'close');
      // never answers
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    const c = new RequestCancel();
    const pending = request(`http://127.0.0.1:${port}/`, { method: 'POST', body: '{}', signal: undiciSignal(c) });
    await new Promise((r) => setTimeout(r, 50));
    c.abort();
    await expect(pending).rejects.toThrow();
    await closed;
    server.close();
  });
});
