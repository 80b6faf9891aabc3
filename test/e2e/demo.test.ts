import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, eventually, refusedPort } from '../helpers/processes.js';
import { dropSchema, PG_URL, uniqueName } from '../helpers/services.js';

/**
 * `switchyard demo` as a user runs it (no REDIS_URL: a redis-server per region, regions that stand alone): sims
 * registered through the admin API, an agent each reporting to one scheduler, a gateway and a
 * worker per region. Driven with the openai SDK and the admin CLI's API.
 */
const schema = uniqueName('sy_demo');
afterAll(() => dropSchema(schema));

describe('switchyard demo', () => {
  it('runs the real layout: registered nodes with agents, gateways that route by their reports, background responses on the workers; SIGTERM stops it all', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-demo-'));
    const [p1, p2, gw] = [await refusedPort(), await refusedPort(), await refusedPort()];
    const config = join(dir, 'regions.yaml');
    writeFileSync(config, `regions:
  - id: west
    residency: eu
    clusters:
      - id: west-a
        nodes:
          - { id: sim-w, url: 'http://127.0.0.1:${p1}', engine: sim, models: [m], capacity: { tokensPerSecond: 4000, maxSequences: 16 }, sim: { ttftMs: 5, seed: 1 } }
  - id: north
    residency: eu
    clusters:
      - id: north-a
        nodes:
          - { id: sim-n, url: 'http://127.0.0.1:${p2}', engine: sim, models: [m], capacity: { tokensPerSecond: 4000, maxSequences: 16 }, sim: { ttftMs: 5, seed: 2 } }
`);
    const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: PG_URL, SWITCHYARD_DATABASE_SCHEMA: schema, SWITCHYARD_DATA_DIR: join(dir, 'data') };
    delete env['REDIS_URL'];
    delete env['SWITCHYARD_ADMIN_TOKEN'];
    const demo = spawn(process.execPath, [CLI, 'demo', '--config', config, '--port', String(gw), '--scheduler-port', String(await refusedPort())], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    demo.stdout.on('data', (c: Buffer) => (out += c.toString()));
    demo.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = once(demo, 'exit');
    try {
      await eventually(async () => out.includes('Switchyard demo is up') || demo.exitCode !== null, 90_000, 'the demo to start');
      expect(out).toContain('A private redis-server per region');
      const admin = /SWITCHYARD_ADMIN_TOKEN=(\S+)/.exec(out)?.[1] as string;
      expect(admin).toMatch(/^demo-/);
      // Each region stands alone (a Redis each): its gateway sees its own node's agent reporting.
      const view = async (port: number) =>
        ((await (await fetch(`http://127.0.0.1:${port}/admin/v1/nodes`, { headers: { authorization: `Bearer ${admin}` } })).json()) as {
          data: Array<{ id: string; source: string; live: { healthy: boolean; fresh: boolean } }>;
        }).data.filter((n) => n.live.fresh).map((n) => `${n.id}:${n.source}:${n.live.healthy}`);
      expect(await view(gw)).toEqual(['sim-w:registered:true']);
      expect(await view(gw + 1)).toEqual(['sim-n:registered:true']);
      // Each region's gateway serves from its own region's registered node.
      for (const [port, node] of [[gw, 'sim-w'], [gw + 1, 'sim-n']] as const) {
        const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });
        const { response } = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }).withResponse();
        expect(response.headers.get('x-switchyard-node')).toBe(node);
        const queued = await client.responses.create({ model: 'm', input: 'echo: from the worker', background: true });
        await eventually(async () => (await client.responses.retrieve(queued.id)).status === 'completed', 15_000, `a background response in ${node}'s region`);
        expect((await client.responses.retrieve(queued.id)).output_text).toBe('from the worker');
      }
    } finally {
      demo.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      if (code !== 0) console.log(out.slice(-4000));
      expect(code).toBe(0);
    }
    expect(out).toContain('stopping');
    // Everything it started is gone: the ports are free again.
    await expect(fetch(`http://127.0.0.1:${p1}/health`)).rejects.toThrow();
    await expect(fetch(`http://127.0.0.1:${gw}/healthz`)).rejects.toThrow();
  });
});
