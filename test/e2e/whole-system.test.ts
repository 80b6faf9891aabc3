import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, refusedPort, regionsYaml, startCli, startGatewayProcess, startSimProcess, type RunningProcess } from '../helpers/processes.js';
import { dropSchema, PG_URL, REDIS_URL, uniqueName } from '../helpers/services.js';

/**
 * The system as a new user starts it: `switchyard start` (agents reporting over gRPC, background
 * responses without Redis), and the separate processes of a deployment started in the order
 * compose starts them (worker before any node is registered; gateways with no worker).
 */
const started: RunningProcess[] = [];
const redis = new Redis(REDIS_URL);
const prefixes: string[] = [];
const ADMIN = 'whole-system-admin';

async function track(p: Promise<RunningProcess>): Promise<RunningProcess> {
  const proc = await p;
  started.push(proc);
  return proc;
}

function writeConfig(yaml: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'switchyard-test-')), 'regions.yaml');
  writeFileSync(path, yaml);
  return path;
}

const admin = (url: string) => async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
  const res = await fetch(`${url}/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
};

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  for (const prefix of prefixes) {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
  }
  await redis.quit();
});

describe('switchyard start without Redis: the whole API from one command', () => {
  it('its sims get agents that report over gRPC, and background responses run in-process (polled and streamed, resumable)', async () => {
    const [p1, p2] = [await refusedPort(), await refusedPort()];
    const config = writeConfig(`regions:
  - id: here
    residency: eu
    clusters:
      - id: here-a
        nodes:
          - { id: sim-a, url: 'http://127.0.0.1:${p1}', engine: sim, models: [m], capacity: { tokensPerSecond: 4000, maxSequences: 16 }, sim: { ttftMs: 5, seed: 1 } }
          - { id: sim-b, url: 'http://127.0.0.1:${p2}', engine: sim, models: [m], capacity: { tokensPerSecond: 4000, maxSequences: 16 }, sim: { ttftMs: 5, seed: 2 } }
`);
    const proc = await track(
      startCli(['start', '--config', config, '--port', '0', '--scheduler-port', '0'], 'gateway listening', { REDIS_URL: '', SWITCHYARD_ADMIN_TOKEN: ADMIN }),
    );
    const call = admin(proc.url);
    // Each sim's agent says Hello with its token and reports: the admin API shows fresh reports.
    await eventually(async () => {
      const nodes = (await call('GET', '/nodes')).json['data'] as Array<{ live: { fresh: boolean; report: unknown } }>;
      return nodes.length === 2 && nodes.every((n) => n.live.fresh && n.live.report !== null);
    }, 10_000, 'both nodes to show fresh agent reports');
    // The scheduler's stale sweep (every second) counts them fresh.
    const metrics = async (): Promise<string> => (await fetch(`${proc.url}/metrics`)).text();
    await eventually(async () => /switchyard_scheduler_nodes\{state="fresh"\} 2/.test(await metrics()), 5000, 'the sweep to count both nodes fresh');
    expect(await metrics()).toMatch(/switchyard_background_workers\{region="here"\} 1/);
    expect(proc.output.filter((l) => l.includes('"msg":"agent connected"'))).toHaveLength(2);
    // The sims' simulated GPUs (their DCGM pages) reach the admin API through agent and scheduler.
    const fleet = (await call('GET', '/fleet')).json as { regions: Array<{ clusters: Array<{ nodes: Array<{ id: string; gpu: { count: number; memory_total_bytes: number | null } | null }> }> }> };
    const gpus = fleet.regions.flatMap((r) => r.clusters.flatMap((c) => c.nodes.map((n) => n.gpu)));
    expect(gpus).toHaveLength(2);
    for (const gpu of gpus) expect(gpu).toMatchObject({ count: 1 });
    expect(gpus[0]?.memory_total_bytes).toBeGreaterThan(70 * 2 ** 30);
    expect(proc.output.some((l) => l.includes('not durable'))).toBe(true);

    const client = new OpenAI({ baseURL: `${proc.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const queued = await client.responses.create({ model: 'm', input: 'echo: ping pong', background: true });
    expect(queued.status).toBe('queued');
    await eventually(async () => (await client.responses.retrieve(queued.id)).status === 'completed', 10_000, 'the background response');
    expect((await client.responses.retrieve(queued.id)).output_text).toBe('ping pong');

    // Streamed: drop out after a few events, resume from the last one seen.
    const live = await client.responses.create({ model: 'm', input: `echo: ${'w '.repeat(40)}`, background: true, stream: true });
    const seen: number[] = [];
    let id = '';
    for await (const event of live) {
      seen.push(event.sequence_number);
      if (event.type === 'response.created') id = event.response.id;
      if (seen.length === 6) break;
    }
    const resumed = await client.responses.retrieve(id, { stream: true, starting_after: seen.at(-1) as number });
    let text = '';
    let last = '';
    for await (const event of resumed) {
      seen.push(event.sequence_number);
      if (event.type === 'response.output_text.delta') text += event.delta;
      last = event.type;
    }
    expect(last).toBe('response.completed');
    expect(seen).toEqual(seen.map((_, i) => i)); // continuous: nothing lost, nothing twice
    expect((await client.responses.retrieve(id)).output_text?.endsWith(text.trim())).toBe(true);
    expect(await proc.stop()).toBe(0);
  });
});

describe('a deployment started in compose order', () => {
  it('a worker started before any node is registered serves background responses once a node joins', async () => {
    const schema = uniqueName('sy_whole');
    const prefix = `${uniqueName('whole')}:`;
    prefixes.push(prefix);
    const env = { DATABASE_URL: PG_URL, SWITCHYARD_DATABASE_SCHEMA: schema, REDIS_URL, SWITCHYARD_REDIS_PREFIX: prefix, SWITCHYARD_ADMIN_TOKEN: ADMIN };
    try {
      const sim = await track(startSimProcess(['--models', 'late-model', '--ttft-ms', '5']));
      // The region declares no node of its own: every node registers later, as in compose.
      const yaml = regionsYaml([{ id: 'r', nodes: [{ id: 'declared', url: `http://127.0.0.1:${await refusedPort()}`, models: ['other-model'] }] }]);
      const config = writeConfig(yaml);
      const scheduler = await track(startCli(['scheduler', '--config', config, '--scheduler-port', '0', '--port', '0'], 'scheduler listening', env));
      await track(startCli(['worker', '--config', config, '--port', '0'], 'worker running', env));
      const gw = await track(startGatewayProcess(yaml, [], env));
      const registered = await admin(gw.url)('POST', '/nodes', {
        id: 'late-1', region: 'r', cluster: 'r-c', url: sim.url, engine: 'vllm', models: ['late-model'], capacity: { tokensPerSecond: 2000, maxSequences: 8 },
      });
      expect(registered.status).toBe(201);
      await track(
        startCli(['agent', '--scheduler', scheduler.url, '--node-id', 'late-1', '--join-token', registered.json['join_token'] as string, '--engine-url', sim.url, '--metrics-port', '0'],
          'agent running', env),
      );
      const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      await eventually(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 10_000, 'the gateway to see the node');
      const queued = await client.responses.create({ model: 'late-model', input: 'echo: joined late', background: true });
      await eventually(async () => ['completed', 'failed'].includes((await client.responses.retrieve(queued.id)).status ?? ''), 15_000, 'the background response');
      const done = await client.responses.retrieve(queued.id);
      expect(done.error).toBeNull();
      expect(done.output_text).toBe('joined late');
    } finally {
      await dropSchema(schema);
    }
  });

  it('a gateway whose region has no worker says so (log, metric, /readyz), then refuses background responses with 503 no_worker', async () => {
    const prefix = `${uniqueName('noworker')}:`;
    prefixes.push(prefix);
    const sim = await track(startSimProcess(['--ttft-ms', '5']));
    const yaml = regionsYaml([{ id: 'lonely', nodes: [{ id: 'n', url: sim.url }] }]);
    const env = { REDIS_URL, SWITCHYARD_REDIS_PREFIX: prefix, SWITCHYARD_WORKER_GRACE_MS: '1500' };
    const gw = await track(startGatewayProcess(yaml, [], env));
    const readyz = async () => (await (await fetch(`${gw.url}/readyz`)).json()) as { status: string; background: { status: string; workers: number | null } };
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });

    await eventually(async () => (await readyz()).background.status === 'no_worker', 10_000, 'the grace period to pass');
    expect(await readyz()).toMatchObject({ status: 'ready', background: { status: 'no_worker', workers: 0 } });
    expect(await (await fetch(`${gw.url}/metrics`)).text()).toMatch(/switchyard_background_workers\{region="lonely"\} 0/);
    const refused = await client.responses.create({ model: 'sim-small', input: 'hi', background: true }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(OpenAI.APIError);
    const apiError = refused as InstanceType<typeof OpenAI.APIError>;
    expect(apiError.status).toBe(503);
    expect(apiError.code).toBe('no_worker');
    expect(apiError.message).toContain('switchyard worker --region lonely');
    expect(apiError.headers?.get('retry-after')).toBe('30');
    // Interactive traffic is unaffected.
    expect((await client.responses.create({ model: 'sim-small', input: 'echo: still here' })).output_text).toBe('still here');
    expect(gw.output.filter((l) => l.includes('no switchyard worker serves'))).toHaveLength(1);

    const config = gw.proc.spawnargs[gw.proc.spawnargs.indexOf('--config') + 1] as string;
    await track(startCli(['worker', '--config', config, '--port', '0'], 'worker running', env));
    await eventually(async () => (await readyz()).background.status === 'ok', 10_000, 'the gateway to see the worker');
    expect((await readyz()).background.workers).toBeGreaterThan(0);
    const queued = await client.responses.create({ model: 'sim-small', input: 'echo: served now', background: true });
    await eventually(async () => (await client.responses.retrieve(queued.id)).status === 'completed', 10_000, 'the background response');
    expect(gw.output.some((l) => l.includes('a worker serves the background queue again'))).toBe(true);
  });
});
