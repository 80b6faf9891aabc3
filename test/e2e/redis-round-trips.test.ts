import { once } from 'node:events';
import { createServer } from 'node:http';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { regionsYaml, startGatewayProcess, type RunningProcess } from '../helpers/processes.js';
import { dropSchema, PG_URL, uniqueName } from '../helpers/services.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

/**
 * Redis round trips on the production path (API keys, Redis limits, Redis ledger, usage buffer in
 * Redis), counted at a TCP proxy in front of Redis that adds 30 ms each way, so that a write
 * waiting on an earlier reply stands apart from writes sent together: each write of the gateway
 * to Redis is one round trip (ioredis sends the commands of one event-loop turn as one write).
 */
const schema = uniqueName('sy_rtt');
const ADMIN = 'rtt-admin';
const redis = new TcpProxy('127.0.0.1', 6379, 30);
const answer = JSON.stringify({
  id: 'chatcmpl-rtt', object: 'chat.completion', created: 1, model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
});
let receivedAt = 0;
const engine = createServer((req, res) => {
  if (req.method === 'GET') return void res.writeHead(200).end('{}');
  req.resume();
  req.once('end', () => {
    receivedAt = performance.now();
    res.writeHead(200, { 'content-type': 'application/json' }).end(answer);
  });
});
let gw: RunningProcess | undefined;

afterAll(async () => {
  await gw?.stop();
  await redis.stop();
  engine.close();
  await dropSchema(schema);
});

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

describe('Redis round trips per request (production path)', () => {
  it('one before the request goes upstream (limits and capacity together), and at most one after', async () => {
    engine.listen(0, '127.0.0.1');
    await once(engine, 'listening');
    await redis.start();
    const url = `http://127.0.0.1:${(engine.address() as { port: number }).port}`;
    gw = await startGatewayProcess(regionsYaml([{ id: 'r', nodes: [{ id: 'n', url, models: ['m'] }] }]), [], {
      DATABASE_URL: PG_URL, SWITCHYARD_DATABASE_SCHEMA: schema, REDIS_URL: `redis://127.0.0.1:${redis.port}`, SWITCHYARD_REDIS_PREFIX: `${schema}:`,
      SWITCHYARD_AUTH: 'keys', SWITCHYARD_ADMIN_TOKEN: ADMIN,
    });
    const res = await fetch(`${gw.url}/admin/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant: 't', name: 'k', limits: { requestsPerMinute: 100_000, tokensPerMinute: 10_000_000, maxConcurrent: 100 } }),
    });
    const { key } = (await res.json()) as { key: string };
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
    const ask = () => client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 });
    for (let i = 0; i < 5; i++) await ask();
    const before: number[] = [];
    const after: number[] = [];
    for (let i = 0; i < 9; i++) {
      redis.clientChunks.length = 0;
      redis.recording = true;
      const t0 = performance.now();
      await ask();
      const upstreamAt = receivedAt;
      // Writes that follow the answer: settled, released and recorded within a few event-loop turns.
      await new Promise((r) => setTimeout(r, 200));
      redis.recording = false;
      before.push(redis.clientChunks.filter((t) => t >= t0 && t < upstreamAt).length);
      after.push(redis.clientChunks.filter((t) => t >= upstreamAt).length);
    }
    // The median: a periodic write of the gateway's own (a ledger snapshot while idle, each
    // second) may fall into one request's window now and then.
    expect(median(before)).toBe(1);
    expect(median(after)).toBeLessThanOrEqual(1);
  });
});
