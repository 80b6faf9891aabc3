import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, regionsYaml, simStats, startCli, startGatewayProcess, startSimProcess, type RunningProcess } from '../helpers/processes.js';
import { dropSchema, PG_URL, REDIS_URL, samplePgConnections, uniqueName } from '../helpers/services.js';

/**
 * Token-capacity scheduling across real processes: gateways sharing the capacity ledger in the
 * machine's Redis (own key prefix), Postgres for keys and usage (own schema), a small fleet of
 * sims whose declared sequence limits match the sims' own, the official SDK as the client.
 * The sims count what they were sent (`peakInFlight`: running + waiting inside the engine), so
 * "no node runs more sequences than its limit" is measured where it matters.
 */
const schema = uniqueName('sy_capacity');
const prefix = `${uniqueName('sytest')}:`;
const ADMIN = uniqueName('admin-token');
const POOL = 3;
const started: RunningProcess[] = [];
let simA: RunningProcess;
let simB: RunningProcess;
let gw1: RunningProcess;
let gw2: RunningProcess;
let yaml: string;
const keys: Record<string, string> = {};

async function track(p: Promise<RunningProcess>): Promise<RunningProcess> {
  const proc = await p;
  started.push(proc);
  return proc;
}

function env(appName: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const url = new URL(PG_URL);
  url.searchParams.set('application_name', appName);
  return {
    DATABASE_URL: url.toString(),
    SWITCHYARD_DATABASE_SCHEMA: schema,
    REDIS_URL,
    SWITCHYARD_REDIS_PREFIX: prefix,
    SWITCHYARD_ADMIN_TOKEN: ADMIN,
    SWITCHYARD_AUTH: 'keys',
    SWITCHYARD_PG_POOL_SIZE: String(POOL),
    SWITCHYARD_USAGE_FLUSH_INTERVAL_MS: '200',
    // Budgets large enough that sequence limits are what binds (the last test holds long streams).
    SWITCHYARD_CAPACITY_HORIZON_S: '600',
    ...extra,
  };
}

async function createKey(tenant: string, priority: 'interactive' | 'standard' | 'batch'): Promise<string> {
  const res = await fetch(`${gw1.url}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant, name: uniqueName('k'), limits: { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, maxConcurrent: 5000 }, priority }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { key: string }).key;
}

const sdk = (gw: RunningProcess, key: string, headers: Record<string, string> = {}): OpenAI =>
  new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0, timeout: 120_000, defaultHeaders: headers });
const ask = (client: OpenAI, maxTokens = 16) =>
  client.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'hello there' }], max_tokens: maxTokens });
/** The sim echoes the words after `echo:`: 3,000 tokens, about 6 s at 500 tokens/s per sequence. */
const LONG = `echo: ${'w '.repeat(3000)}`;

/** Engines never hold more requests than their declared sequence limits (8 and 4). */
async function expectNoOvercommit(): Promise<void> {
  const [a, b] = await Promise.all([simStats(simA.url), simStats(simB.url)]);
  expect(a.peakInFlight).toBeGreaterThan(0);
  expect(a.peakInFlight).toBeLessThanOrEqual(8);
  expect(b.peakInFlight).toBeLessThanOrEqual(4);
}

async function metric(gw: RunningProcess, name: string): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

beforeAll(async () => {
  [simA, simB] = await Promise.all([
    track(startSimProcess(['--max-seqs', '8', '--tokens-per-second', '4000', '--ttft-ms', '5'])),
    track(startSimProcess(['--max-seqs', '4', '--tokens-per-second', '2000', '--ttft-ms', '5'])),
  ]);
  yaml = regionsYaml([
    {
      id: 'r',
      nodes: [
        { id: 'a', url: simA.url, maxSequences: 8, tokensPerSecond: 4000 },
        { id: 'b', url: simB.url, maxSequences: 4, tokensPerSecond: 2000 },
      ],
    },
  ]);
  // One gateway first, so it applies the migrations alone.
  gw1 = await track(startGatewayProcess(yaml, [], env(`${schema}_gw1`)));
  [gw2] = await Promise.all([
    track(startGatewayProcess(yaml, [], env(`${schema}_gw2`, { SWITCHYARD_QUEUE_MAX: '20' }))),
    track(startCli(['worker', '--port', '0'], 'worker running', env(`${schema}_worker`))),
  ]);
  for (const [name, priority] of [['flood', 'standard'], ['other', 'standard'], ['vip', 'interactive']] as const) {
    keys[name] = await createKey(name, priority);
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await dropSchema(schema);
});

describe('token-capacity scheduling', () => {
  it('1,000 agents at once: all complete, no engine holds more than its limit, Postgres stays within the pool', async () => {
    const sampler = samplePgConnections(`${schema}_gw1`);
    const client = sdk(gw1, keys['flood'] as string);
    const results = await Promise.allSettled(Array.from({ length: 1000 }, () => ask(client)));
    const peakConnections = await sampler.stop();
    const failed = results.filter((r) => r.status === 'rejected');
    expect(failed.map((r) => String(r.reason))).toEqual([]);
    for (const r of results) if (r.status === 'fulfilled') expect(r.value.choices[0]?.message.content).toBeTruthy();
    await expectNoOvercommit();
    expect(peakConnections).toBeLessThanOrEqual(POOL);
    // They did wait: the queue was used, not the engines' own queues.
    expect(await metric(gw1, 'switchyard_queue_wait_seconds_count{priority="standard"}')).toBeGreaterThanOrEqual(1000);
    expect(await metric(gw1, 'switchyard_queue_depth')).toBe(0);
  }, 120_000);

  it('past its deadline a request gets 503 no_capacity with Retry-After, never another 5xx', async () => {
    const client = sdk(gw1, keys['flood'] as string, { 'x-switchyard-queue-timeout-ms': '100' });
    const results = await Promise.allSettled(Array.from({ length: 300 }, () => ask(client, 64)));
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
    expect(refused.length).toBeGreaterThan(0);
    expect(results.length - refused.length).toBeGreaterThan(0);
    for (const err of refused) {
      expect(err).toBeInstanceOf(APIError);
      const e = err as APIError;
      expect(e.status).toBe(503);
      expect(e.code).toBe('no_capacity');
      expect(Number(e.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    await expectNoOvercommit();
    expect(await metric(gw1, 'switchyard_queue_rejections_total{reason="deadline"}')).toBe(refused.length);
  }, 60_000);

  it('a full queue answers 503 at once', async () => {
    // gw2 holds at most 20 waiting requests per model; 12 run, 20 wait, the rest are refused.
    // That count needs gw2 to start from free nodes: its view may still hold the last test's
    // flood on gw1 (views trust "full" for one sync interval), so wait until it sees them free.
    await eventually(async () => (await metric(gw2, 'switchyard_node_reserved_sequences')) === 0, 10_000, 'gw2 to see the nodes free');
    const client = sdk(gw2, keys['flood'] as string);
    const started = Date.now();
    const results = await Promise.allSettled(Array.from({ length: 100 }, () => ask(client, 200)));
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as APIError);
    // At least 12 run and 20 wait (more as slots free up during the burst); the rest are refused.
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.length).toBeLessThanOrEqual(100 - 12 - 20);
    for (const e of refused) {
      expect(e.status).toBe(503);
      expect(e.code).toBe('no_capacity');
      expect(e.message).toContain('queue for this model is full');
    }
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(await metric(gw2, 'switchyard_queue_rejections_total{reason="queue_full"}')).toBe(refused.length);
  }, 90_000);

  it('two gateways sharing the ledger never over-commit a node', async () => {
    const c1 = sdk(gw1, keys['flood'] as string);
    const c2 = sdk(gw2, keys['other'] as string, { 'x-switchyard-queue-timeout-ms': '60000' });
    // gw2's queue holds 20: keep its share below that, so everything completes.
    const results = await Promise.allSettled([
      ...Array.from({ length: 300 }, () => ask(c1, 32)),
      ...Array.from({ length: 30 }, (_, i) => (i < 15 ? ask(c2, 32) : new Promise((r) => setTimeout(r, 200)).then(() => ask(c2, 32)))),
    ]);
    const failed = results.filter((r) => r.status === 'rejected');
    // A gw2 request may meet a full queue (its bound is 20): that is a clean 503, nothing else.
    for (const f of failed) expect((f as PromiseRejectedResult).reason).toMatchObject({ status: 503, code: 'no_capacity' });
    expect(results.length - failed.length).toBeGreaterThanOrEqual(310);
    await expectNoOvercommit();
  }, 120_000);

  it('fair share: a tenant flooding the queue cannot delay another beyond its share', async () => {
    const flood = sdk(gw1, keys['flood'] as string);
    const other = sdk(gw1, keys['other'] as string);
    const t0 = Date.now();
    const floodDone: number[] = [];
    const floodAll = Promise.all(Array.from({ length: 400 }, () => ask(flood, 32).then(() => floodDone.push(Date.now() - t0))));
    await eventually(async () => (await metric(gw1, 'switchyard_queue_depth')) > 300, 10_000, 'the flood to queue up');
    const t1 = Date.now();
    const otherTimes = await Promise.all(Array.from({ length: 20 }, () => ask(other, 32).then(() => Date.now() - t1)));
    await floodAll;
    floodDone.sort((a, b) => a - b);
    // FIFO would put all 20 behind the ~300 queued flood requests; fair share serves them in
    // turn with the flood, so the last of them is done before most of the flood.
    expect(Math.max(...otherTimes) + (t1 - t0)).toBeLessThan(floodDone[Math.floor(floodDone.length * 0.6)] as number);
  }, 120_000);

  it('priorities: interactive requests overtake a queue of batch work', async () => {
    const batch = sdk(gw1, keys['vip'] as string, { 'x-switchyard-priority': 'batch' });
    const vip = sdk(gw1, keys['vip'] as string);
    const t0 = Date.now();
    const batchDone: number[] = [];
    const batchAll = Promise.all(Array.from({ length: 300 }, () => ask(batch, 32).then(() => batchDone.push(Date.now() - t0))));
    await eventually(async () => (await metric(gw1, 'switchyard_queue_depth')) > 200, 10_000, 'the batch work to queue up');
    const t1 = Date.now();
    const vipTimes = await Promise.all(Array.from({ length: 20 }, () => ask(vip, 32).then(() => Date.now() - t1 + (t1 - t0))));
    await batchAll;
    batchDone.sort((a, b) => a - b);
    expect(Math.max(...vipTimes)).toBeLessThan(batchDone[Math.floor(batchDone.length * 0.5)] as number);
    // A standard key may not raise itself to interactive: the header can only step down.
    const res = await fetch(`${gw1.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys['other'] as string}`, 'content-type': 'application/json', 'x-switchyard-priority': 'nonsense' },
      body: JSON.stringify({ model: 'sim-small', messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { param: 'x-switchyard-priority', type: 'invalid_request_error' } });
  }, 120_000);

  it('a client that disconnects while queued leaves the queue at once and never reaches a node', async () => {
    const holder = sdk(gw1, keys['flood'] as string);
    // Fill all 12 slots with long requests.
    const long = Array.from({ length: 12 }, () =>
      holder.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: LONG }], max_tokens: 3500 }),
    );
    await eventually(async () => (await simStats(simA.url)).running + (await simStats(simB.url)).running === 12, 10_000, 'every slot busy');
    const received = (await simStats(simA.url)).received + (await simStats(simB.url)).received;
    const closedBefore = await metric(gw1, 'switchyard_queue_rejections_total{reason="client_closed"}');
    const abort = new AbortController();
    const queued = holder.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'wait' }], max_tokens: 5 }, { signal: abort.signal });
    await eventually(async () => (await metric(gw1, 'switchyard_queue_depth')) === 1, 10_000, 'the request to queue');
    abort.abort();
    await expect(queued).rejects.toThrow();
    await eventually(async () => (await metric(gw1, 'switchyard_queue_depth')) === 0, 5000, 'the queue to empty');
    expect(await metric(gw1, 'switchyard_queue_rejections_total{reason="client_closed"}')).toBe(closedBefore + 1);
    await Promise.all(long);
    expect((await simStats(simA.url)).received + (await simStats(simB.url)).received).toBe(received);
  }, 90_000);

  it("a killed gateway's reservations expire and its capacity returns within the lease TTL", async () => {
    const doomed = await track(startGatewayProcess(yaml, [], env(`${schema}_doomed`, { SWITCHYARD_CAPACITY_LEASE_TTL_MS: '2000' })));
    const client = sdk(doomed, keys['flood'] as string);
    // Streams that would run for 6 s, read by their clients, hold every slot of the fleet in the ledger.
    const streams = Array.from({ length: 12 }, async () => {
      try {
        const stream = await client.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: LONG }], max_tokens: 3500, stream: true });
        for await (const _chunk of stream) {
          // reading, as a client would
        }
      } catch {
        // cut when the gateway dies
      }
    });
    await eventually(async () => (await metric(gw1, 'switchyard_node_reserved_sequences')) === 12, 10_000, 'gw1 to see the fleet full');
    doomed.proc.kill('SIGKILL');
    await Promise.all(streams);
    const t0 = Date.now();
    const res = await sdk(gw1, keys['other'] as string).chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'after' }], max_tokens: 4 }).withResponse();
    const waited = Date.now() - t0;
    expect(res.data.choices[0]?.message.content).toBeTruthy();
    // It waited for the dead gateway's leases (2 s TTL), not for the end of their streams (6 s),
    // nor until its deadline (60 s) as it would if the dead gateway's capacity never came back.
    expect(Number(res.response.headers.get('x-switchyard-queue-ms'))).toBeGreaterThan(0);
    expect(waited).toBeLessThan(5000);
    await eventually(async () => (await metric(gw1, 'switchyard_node_reserved_sequences')) === 0, 10_000, 'the ledger to empty');
  }, 60_000);
});
