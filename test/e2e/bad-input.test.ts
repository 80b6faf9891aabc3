import { isUtf8 } from 'node:buffer';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { regionsYaml, startGatewayProcess, type RunningProcess } from '../helpers/processes.js';
import { uniqueName } from '../helpers/services.js';

/**
 * Malformed requests are answered by the gateway with OpenAI's 4xx, never passed on for an engine
 * to fail with a 5xx (which would count against a healthy node). The engine here behaves as
 * llama.cpp does: a body that is not valid Unicode JSON gets a 500.
 */
const ADMIN = uniqueName('admin');
const engineRequests: string[] = [];
const engine = createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.once('end', () => {
    engineRequests.push(req.url ?? '');
    const body = Buffer.concat(chunks);
    let parsed: { model?: unknown } | undefined;
    try {
      parsed = isUtf8(body) ? (JSON.parse(body.toString('utf8')) as { model?: unknown }) : undefined;
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || hasLoneSurrogate(parsed)) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 500, message: '[json.exception.parse_error.101] parse error: invalid string', type: 'server_error' } }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: parsed.model,
      choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    }));
  });
});

function hasLoneSurrogate(v: unknown): boolean {
  if (typeof v === 'string') return /\p{Cs}/u.test(v);
  if (typeof v === 'object' && v !== null) return Object.entries(v).some(([k, c]) => /\p{Cs}/u.test(k) || hasLoneSurrogate(c));
  return false;
}

let gw: RunningProcess;
let client: OpenAI;
const messages = [{ role: 'user' as const, content: 'hi' }];
const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };

beforeAll(async () => {
  engine.listen(0, '127.0.0.1');
  await once(engine, 'listening');
  const port = (engine.address() as { port: number }).port;
  gw = await startGatewayProcess(regionsYaml([{ id: 'r', nodes: [{ id: 'llama', url: `http://127.0.0.1:${port}`, models: ['m'] }] }]), [], {
    SWITCHYARD_ADMIN_TOKEN: ADMIN,
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await gw.stop();
  engine.close();
});

async function badRequest(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.BadRequestError>> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(OpenAI.BadRequestError);
  return err as InstanceType<typeof OpenAI.BadRequestError>;
}

async function upstreamErrorsOfTheNode(): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(/^switchyard_upstream_errors_total\{[^}]*node="llama"[^}]*\} (\d+)/gm)) sum += Number(m[1]);
  return sum;
}

describe('wrong types are 400s naming the parameter, never coerced', () => {
  it('the openai SDK with "model": 42 gets BadRequestError with param "model"', async () => {
    const err = await badRequest(client.chat.completions.create({ model: 42 as unknown as string, messages }));
    expect(err.param).toBe('model');
    expect(err.code).toBe('invalid_request');
    expect(err.type).toBe('invalid_request_error');
    expect(err.message).toContain("Invalid type for 'model': expected a string, but got an integer instead.");
  });

  // Every field the gateway reads, on each route; none of these requests may reach the engine.
  const cases: Array<[string, string, Record<string, unknown>, string, string]> = [
    ['chat', '/v1/chat/completions', { max_tokens: '10' }, 'max_tokens', 'expected an integer or null, but got a string'],
    ['chat', '/v1/chat/completions', { max_completion_tokens: true }, 'max_completion_tokens', 'expected an integer or null, but got a boolean'],
    ['chat', '/v1/chat/completions', { stream: 'yes' }, 'stream', 'expected a boolean or null, but got a string'],
    ['chat', '/v1/chat/completions', { stream: 1 }, 'stream', 'expected a boolean or null, but got an integer'],
    ['chat', '/v1/chat/completions', { stream_options: { include_usage: 'true' } }, 'stream_options.include_usage', 'expected a boolean, but got a string'],
    ['chat', '/v1/chat/completions', { user: 7 }, 'user', 'expected a string, but got an integer'],
    ['chat', '/v1/chat/completions', { prompt_cache_key: ['k'] }, 'prompt_cache_key', 'expected a string or null, but got an array'],
    ['chat', '/v1/chat/completions', { messages: [{ role: 1, content: 'hi' }] }, 'messages[0].role', 'expected a string, but got an integer'],
    ['completions', '/v1/completions', { model: 42, prompt: 'x' }, 'model', 'expected a string, but got an integer'],
    ['completions', '/v1/completions', { prompt: 'x', max_tokens: '3' }, 'max_tokens', 'expected an integer or null, but got a string'],
    ['embeddings', '/v1/embeddings', { model: 42, input: 'x' }, 'model', 'expected a string, but got an integer'],
  ];
  it.each(cases)('%s %j → 400 naming %s', async (_kind, path, fields, param, says) => {
    const before = engineRequests.length;
    const base = path === '/v1/chat/completions' ? { model: 'm', messages } : path === '/v1/completions' ? { model: 'm', prompt: 'x' } : { model: 'm', input: 'x' };
    const res = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...base, ...fields }) });
    const body = (await res.json()) as { error: { message: string; param: string | null; type: string; code: string } };
    expect({ status: res.status, ...body.error }).toMatchObject({ status: 400, param, type: 'invalid_request_error', code: 'invalid_request' });
    expect(body.error.message).toContain(says);
    expect(engineRequests.length).toBe(before);
  });

  it('the Responses API: "model": 42 is a 400 naming model', async () => {
    const err = await badRequest(client.responses.create({ model: 42 as unknown as string, input: 'hi' }));
    expect(err.param).toBe('model');
  });

  it('admin bodies are not coerced either; query strings still are text', async () => {
    const node = { id: 'n-typed', region: 'r', cluster: 'c', url: 'http://127.0.0.1:9', engine: 'vllm', models: ['m'], capacity: { tokensPerSecond: 100, maxSequences: '64' } };
    const res = await fetch(`${gw.url}/admin/v1/nodes`, { method: 'POST', headers: admin, body: JSON.stringify(node) });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { param: 'capacity.maxSequences', code: 'invalid_request' } });
    expect((await fetch(`${gw.url}/admin/v1/nodes/n-typed`, { headers: admin })).status).toBe(404);
    const usage = await fetch(`${gw.url}/admin/v1/usage?groupBy=model`, { headers: admin });
    expect(usage.status).toBe(200);
  });
});

describe('bodies that are not valid Unicode are refused at the gateway', () => {
  it('invalid UTF-8 bytes in a JSON body: 400 invalid_json; the engine never sees them', async () => {
    const before = engineRequests.length;
    const errorsBefore = await upstreamErrorsOfTheNode();
    const body = Buffer.concat([Buffer.from('{"model":"m","messages":[{"role":"user","content":"caf'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}]}')]);
    const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_json', message: expect.stringContaining('UTF-8') } });
    expect(engineRequests.length).toBe(before);
    expect(await upstreamErrorsOfTheNode()).toBe(errorsBefore);
  });

  it('a lone surrogate sent by the openai SDK ("\\ud800"): BadRequestError, the node stays clean', async () => {
    const before = engineRequests.length;
    const err = await badRequest(client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'half \ud800 a character' }] }));
    expect(err.code).toBe('invalid_json');
    expect(engineRequests.length).toBe(before);
    // A well-formed pair, escaped, is fine and reaches the engine.
    const ok = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'emoji \ud83d\ude00' }] });
    expect(ok.choices[0]?.message.content).toBe('ok');
  });
});

describe('a body far over the limit', () => {
  const big = 'a'.repeat(64 * 1024 * 1024);

  it('the openai SDK sees APIError 413, every time (5 rounds of 3 at once), never APIConnectionError', async () => {
    const seen: string[] = [];
    for (let round = 0; round < 5; round++) {
      const errors = await Promise.all(
        [0, 1, 2].map(() => client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: big }] }).then(() => undefined, (e: unknown) => e)),
      );
      for (const e of errors) {
        seen.push(e instanceof OpenAI.APIConnectionError ? `APIConnectionError: ${String((e.cause as { cause?: { code?: string } } | undefined)?.cause?.code)}` : `${(e as { status?: number }).status ?? 'none'}`);
        if (!(e instanceof OpenAI.APIConnectionError)) {
          expect(e).toBeInstanceOf(OpenAI.APIError);
          expect(e).toMatchObject({ status: 413, code: 'payload_too_large', type: 'invalid_request_error' });
        }
      }
    }
    expect(seen).toEqual(Array(15).fill('413'));
  });

  it('a client that writes the whole body before reading gets the 413, and the connection serves the next request', async () => {
    const size = 64 * 1024 * 1024;
    const { hostname, port } = new URL(gw.url);
    const socket = connect(Number(port), hostname);
    let received = '';
    const failures: string[] = [];
    socket.on('data', (d: Buffer) => {
      received += d.toString('latin1');
    });
    socket.on('error', (e: NodeJS.ErrnoException) => failures.push(e.code ?? e.message));
    const closed = once(socket, 'close');
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${size}\r\n\r\n`);
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    for (let sent = 0; sent < size && !socket.destroyed; sent += chunk.length) {
      if (!socket.write(chunk)) await Promise.race([once(socket, 'drain').catch(() => undefined), closed]);
    }
    socket.write('GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    await closed;
    expect(failures).toEqual([]);
    expect(received.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 413', 'HTTP/1.1 200']);
    expect(received).toContain('"code":"payload_too_large"');
  });
});

describe('bodiless calls sent with content-type: application/json and no body', () => {
  const empty = (method: string, path: string, headers: Record<string, string> = admin): Promise<Response> => fetch(`${gw.url}${path}`, { method, headers });

  it('admin: drain, resume and delete a node; revoke a key', async () => {
    const node = { id: 'n-empty', region: 'r', cluster: 'c', url: 'http://127.0.0.1:9', engine: 'vllm', models: ['m'], capacity: { tokensPerSecond: 100, maxSequences: 4 } };
    expect((await fetch(`${gw.url}/admin/v1/nodes`, { method: 'POST', headers: admin, body: JSON.stringify(node) })).status).toBe(201);
    const drained = await empty('POST', '/admin/v1/nodes/n-empty/drain');
    expect(drained.status).toBe(200);
    expect(await drained.json()).toMatchObject({ id: 'n-empty', draining: true });
    const resumed = await empty('POST', '/admin/v1/nodes/n-empty/resume');
    expect(await resumed.json()).toMatchObject({ id: 'n-empty', draining: false });
    const deleted = await empty('DELETE', '/admin/v1/nodes/n-empty');
    expect(await deleted.json()).toMatchObject({ id: 'n-empty', deleted: true });

    const key = (await (await fetch(`${gw.url}/admin/v1/keys`, {
      method: 'POST', headers: admin, body: JSON.stringify({ tenant: 't-empty', name: 'k', limits: { requestsPerMinute: 10, tokensPerMinute: 1000, maxConcurrent: 1 } }),
    })).json()) as { id: string };
    const revoked = await empty('DELETE', `/admin/v1/keys/${key.id}`);
    expect(await revoked.json()).toMatchObject({ id: key.id, revoked: true });
  });

  it('Responses: cancel and delete answer for the response, not about the body', async () => {
    const created = await client.responses.create({ model: 'm', input: 'hi' });
    const json = { 'content-type': 'application/json' };
    const cancel = await empty('POST', `/v1/responses/${created.id}/cancel`, json);
    expect(cancel.status).toBe(400);
    expect(await cancel.json()).toMatchObject({ error: { param: 'response_id', message: 'Only background responses can be cancelled.' } });
    const deleted = await empty('DELETE', `/v1/responses/${created.id}`, json);
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toMatchObject({ id: created.id, deleted: true });
  });

  it('routes that need a body still say it is empty', async () => {
    const json = { 'content-type': 'application/json' };
    for (const [path, headers] of [['/v1/chat/completions', json], ['/v1/responses', json], ['/admin/v1/keys', admin]] as const) {
      const res = await empty('POST', path, headers);
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: { code: 'invalid_json', message: 'Request body is empty; expected a JSON object.' } });
    }
  });
});
