import { once } from 'node:events';
import { createServer } from 'node:http';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { regionsYaml, startGatewayProcess, type RunningProcess } from '../helpers/processes.js';
import { dropSchema, PG_URL, uniqueName } from '../helpers/services.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

/**
 * Redis round trips on the production path (API keys, Redis limits, Redis ledger, usage records),
 * seen at a TCP proxy in front of Redis that holds every chunk 30 ms each way. Writes sent together
 * (the limiter's and the ledger's scripts of one event-loop turn) arrive within a few ms of each
 * other; a write that waited for a reply comes at least 60 ms after the one before. So bursts of
 * writes are round trips.
 */
const DELAY_MS = 30;
const schema = uniqueName('sy_rtt');
const ADMIN = 'rtt-admin';
const redis = new TcpProxy('127.0.0.1', 6379, DELAY_MS);
const answer = JSON.stringify({
  id: 'chatcmpl-rtt', object: 'chat.completion', created: 1, model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
});
let receivedAt = 0;
/** With `barrier` set, the engine answers nobody until that many requests are in, then everyone at once. */
let barrier = 0;
let held: Array<() => void> = [];
const engine = createServer((req, res) => {
  if (req.method === 'GET') return void res.writeHead(200).end('{}');
  req.resume();
  req.once('end', () => {
    receivedAt = performance.now();
    const send = (): void => void res.writeHead(200, { 'content-type': 'application/json' }).end(answer);
    if (barrier === 0) return send();
    held.push(send);
    if (held.length >= barrier) {
      for (const s of held) s();
      held = [];
    }
  });
});
let gw: RunningProcess | undefined;
let client: OpenAI;

afterAll(async () => {
  await gw?.stop();
  await redis.stop();
  engine.close();
  await dropSchema(schema);
});

/** Chunks less than a third of the delay apart went out together: one round trip. */
function roundTrips(times: readonly number[]): number {
  let trips = 0;
  let last = -Infinity;
  for (const t of [...times].sort((a, b) => a - b)) {
    if (t - last > DELAY_MS / 3) trips++;
    last = t;
  }
  return trips;
}

/** The commands (arrays of bulk strings) each connection wrote, parsed from its RESP bytes. */
function commands(chunks: readonly { data: Buffer; connection: number }[]): string[][] {
  const byConnection = new Map<number, Buffer[]>();
  for (const c of chunks) byConnection.set(c.connection, [...(byConnection.get(c.connection) ?? []), c.data]);
  const out: string[][] = [];
  for (const parts of byConnection.values()) {
    const text = Buffer.concat(parts).toString('latin1');
    let i = 0;
    const line = (): string => {
      const end = text.indexOf('\r\n', i);
      const l = text.slice(i, end);
      i = end + 2;
      return l;
    };
    while (i < text.length) {
      const head = line();
      if (!head.startsWith('*')) throw new Error(`not a RESP array: ${head}`);
      const args: string[] = [];
      for (let n = Number(head.slice(1)); n > 0; n--) {
        const len = Number(line().slice(1));
        args.push(text.slice(i, i + len));
        i += len + 2;
      }
      out.push(args);
    }
  }
  return out;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const ask = () => client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 });

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
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
    for (let i = 0; i < 5; i++) await ask();
    const before: number[] = [];
    const after: number[] = [];
    for (let i = 0; i < 9; i++) {
      redis.clientChunks.length = 0;
      redis.recording = true;
      const t0 = performance.now();
      await ask();
      const upstreamAt = receivedAt;
      // Writes that follow the answer: settled and released within a few event-loop turns.
      await new Promise((r) => setTimeout(r, 200));
      redis.recording = false;
      const times = redis.clientChunks.map((c) => c.at);
      before.push(roundTrips(times.filter((t) => t >= t0 && t < upstreamAt)));
      after.push(roundTrips(times.filter((t) => t >= upstreamAt)));
    }
    // The median: a periodic write of the gateway's own (a ledger snapshot while idle, each
    // second) may fall into one request's window now and then.
    expect(median(before)).toBe(1);
    expect(median(after)).toBeLessThanOrEqual(1);
  });

  it('requests that end together are settled together: fewer limiter scripts than requests', async () => {
    const n = 20;
    barrier = n;
    redis.clientChunks.length = 0;
    redis.recording = true;
    await Promise.all(Array.from({ length: n }, ask));
    await new Promise((r) => setTimeout(r, 300));
    redis.recording = false;
    barrier = 0;
    // The limiter's scripts name the key's bucket; admissions and settles, one each per request
    // if nothing were batched. The 20 answers come back at once, so their settles share scripts.
    const limiterScripts = commands(redis.clientChunks).filter((c) => c[0]?.toLowerCase() === 'evalsha' && c[3]?.endsWith(':bucket') === true);
    expect(limiterScripts.length).toBeGreaterThan(0);
    expect(limiterScripts.length).toBeLessThan(2 * n);
  });
});
