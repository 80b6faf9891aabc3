import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { CLI, eventually, startCli } from '../helpers/processes.js';
import { dropSchema, PG_URL, REDIS_URL, uniqueName } from '../helpers/services.js';

describe('switchyard start (what `npm start` runs)', () => {
  it('serves the shipped regions.yaml with in-process sims, and stops cleanly on SIGTERM', async () => {
    const proc = await startCli(['start', '--port', '0', '--scheduler-port', '0'], 'gateway listening');
    try {
      const client = new OpenAI({ baseURL: `${proc.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const ids = [];
      for await (const m of client.models.list()) ids.push(m.id);
      expect(ids).toEqual(['bge-small-en', 'llama-3.1-8b-instruct']);
      const { data, response } = await client.chat.completions
        .create({ model: 'llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 8 })
        .withResponse();
      expect(data.usage?.completion_tokens).toBe(8);
      expect(response.headers.get('x-switchyard-node')).toBe('eu-west-h100-1');
    } finally {
      expect(await proc.stop()).toBe(0);
    }
    // Its own fresh schema: the migrations are applied, and said so once.
    const applied = proc.output.filter((line) => line.includes('"msg":"migrations applied"'));
    expect(applied).toHaveLength(1);
  });
});

describe('switchyard start with REDIS_URL (gateway, scheduler and a background worker in one process)', () => {
  it('runs a background response on its in-process worker, then exits 0 on SIGTERM with every Redis connection closed', async () => {
    const env = { REDIS_URL, SWITCHYARD_REDIS_PREFIX: `${uniqueName('start_redis')}:` };
    const proc = await startCli(['start', '--port', '0', '--scheduler-port', '0'], 'gateway listening', env);
    try {
      const client = new OpenAI({ baseURL: `${proc.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const queued = await client.responses.create({ model: 'llama-3.1-8b-instruct', input: 'echo: ping', background: true });
      expect(queued.status).toBe('queued');
      await eventually(async () => (await client.responses.retrieve(queued.id)).status === 'completed', 10_000, 'the background response');
      expect((await client.responses.retrieve(queued.id)).output_text).toBe('ping');
    } finally {
      // The gateway's and the worker's fleet views share one live-state subscription: a second,
      // unclosed subscriber connection once kept this process alive after shutdown.
      expect(await proc.stop()).toBe(0);
    }
  });
});

describe('switchyard start on the embedded defaults (no REDIS_URL, no DATABASE_URL)', () => {
  it('keys, limits and usage work: key created by the CLI, 429 past its limit, usage aggregated', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'switchyard-data-'));
    const admin = 'test-admin-token';
    const env = { SWITCHYARD_ADMIN_TOKEN: admin, SWITCHYARD_AUTH: 'keys', SWITCHYARD_DATA_DIR: dataDir, SWITCHYARD_USAGE_FLUSH_INTERVAL_MS: '100', REDIS_URL: '', DATABASE_URL: '' };
    const proc = await startCli(['start', '--port', '0', '--scheduler-port', '0'], 'gateway listening', env);
    try {
      const created = spawnSync(
        process.execPath,
        [CLI, 'keys', 'create', '--tenant', 'acme', '--name', 'ci', '--rpm', '3', '--json', '--url', proc.url],
        { encoding: 'utf8', env: { ...process.env, SWITCHYARD_ADMIN_TOKEN: admin } },
      );
      expect(created.stderr).toBe('');
      const key = JSON.parse(created.stdout) as { id: string; key: string };
      const client = new OpenAI({ baseURL: `${proc.url}/v1`, apiKey: key.key, maxRetries: 0 });
      const ask = () => client.chat.completions.create({ model: 'llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
      for (let i = 0; i < 3; i++) expect((await ask()).usage?.completion_tokens).toBe(5);
      await expect(ask()).rejects.toBeInstanceOf(OpenAI.RateLimitError);

      const listed = spawnSync(process.execPath, [CLI, 'keys', 'list', '--url', proc.url], { encoding: 'utf8', env: { ...process.env, SWITCHYARD_ADMIN_TOKEN: admin } });
      expect(listed.stdout).toContain(key.id);
      const usage = async () => {
        const res = await fetch(`${proc.url}/admin/v1/usage?groupBy=key`, { headers: { authorization: `Bearer ${admin}` } });
        return ((await res.json()) as { data: Array<{ group: string; requests: number; completion_tokens: number; errors: number }> }).data;
      };
      await eventually(async () => (await usage()).some((r) => r.group === key.id && r.requests === 4), 5000, 'usage to be written');
      expect((await usage()).find((r) => r.group === key.id)).toMatchObject({ requests: 4, completion_tokens: 15, errors: 1 });

      const revoked = spawnSync(process.execPath, [CLI, 'keys', 'revoke', key.id, '--url', proc.url], { encoding: 'utf8', env: { ...process.env, SWITCHYARD_ADMIN_TOKEN: admin } });
      expect(revoked.status).toBe(0);
      await expect(ask()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    } finally {
      expect(await proc.stop()).toBe(0);
    }
    // Node prints warnings to stderr: none is expected (a 'connect' listener once raced the
    // first query on the embedded pool's client: pg's concurrent-query deprecation).
    expect(proc.output.filter((line) => line.includes('Warning'))).toEqual([]);
  });
});

describe('switchyard migrate and worker', () => {
  it('migrate applies the migrations once, then reports up to date; worker without Redis says why', async () => {
    const schema = uniqueName('sy_cli_migrate');
    const env = { ...process.env, DATABASE_URL: PG_URL, SWITCHYARD_DATABASE_SCHEMA: schema, SWITCHYARD_LOG_LEVEL: 'warn' };
    try {
      const first = spawnSync(process.execPath, [CLI, 'migrate'], { encoding: 'utf8', env });
      expect(first.status).toBe(0);
      expect(first.stdout).toMatch(/migrations applied: 1764300000000_initial, 1764300000001_capacity-snapshots/);
      const again = spawnSync(process.execPath, [CLI, 'migrate'], { encoding: 'utf8', env });
      expect(again.stdout).toContain('migrations: up to date');
    } finally {
      await dropSchema(schema);
    }
    const worker = spawnSync(process.execPath, [CLI, 'worker'], { encoding: 'utf8', env: { ...process.env, REDIS_URL: '' } });
    expect(worker.status).toBe(2);
    expect(worker.stderr).toContain('worker needs Redis (REDIS_URL, SWITCHYARD_REDIS_SENTINELS or SWITCHYARD_REDIS_CLUSTER)');
  });
});

describe('configuration errors', () => {
  it('exit with code 2 and every problem with its path, no stack trace', () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-cli-'));
    const path = join(dir, 'regions.yaml');
    writeFileSync(
      path,
      `regions:\n  - id: r\n    residency: eu\n    clusters:\n      - id: c\n        nodes:\n          - { id: a, url: "not a url", engine: vllm, models: [m], capacity: { tokensPerSecond: -5, maxSequences: 4 } }\n`,
    );
    const run = spawnSync(process.execPath, [CLI, 'gateway', '--config', path, '--port', '0'], { encoding: 'utf8' });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('regions[0].clusters[0].nodes[0].url: must be an http(s) URL');
    expect(run.stderr).toContain('regions[0].clusters[0].nodes[0].capacity.tokensPerSecond: must be a positive number');
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });

  it('a bad setting names its variable; a missing file is reported, not thrown', () => {
    const bad = spawnSync(process.execPath, [CLI, 'gateway'], { encoding: 'utf8', env: { ...process.env, SWITCHYARD_PORT: 'eighty' } });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('SWITCHYARD_PORT: must be a port number 0-65535');
    const missing = spawnSync(process.execPath, [CLI, 'gateway', '--config', '/nonexistent/regions.yaml'], { encoding: 'utf8' });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('file not found');
    const unknown = spawnSync(process.execPath, [CLI, 'gateway', '--region', 'mars', '--port', '0'], { encoding: 'utf8' });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('SWITCHYARD_REGION: unknown region "mars"');
  });
});

describe('switchyard <command> --help', () => {
  const commands = ['start', 'gateway', 'sim', 'demo', 'worker', 'migrate', 'scheduler', 'agent', 'nodes', 'keys'];
  const help = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, REDIS_URL: '' } });

  it.each(commands)('%s --help and -h print its usage and exit 0, starting nothing', (command) => {
    for (const flag of ['--help', '-h']) {
      const run = help(command, flag);
      expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
      expect(run.stdout).toMatch(new RegExp(`^switchyard ${command}: .+\\n\\nusage: switchyard ${command}`));
    }
  });

  it('lists the flags each command takes; help <command> and a --help after other flags say the same', () => {
    const gateway = help('gateway', '--help').stdout;
    expect(gateway).toContain('--log-format');
    expect(gateway).toContain('SWITCHYARD_LOG_FORMAT');
    expect(gateway).toContain('--redis-url');
    expect(help('sim', '--help').stdout).toContain('--tokens-per-second');
    expect(help('agent', '--help').stdout).toContain('--engine-url');
    expect(help('keys', '--help').stdout).toContain('create --tenant T --name N');
    expect(help('nodes', '--help').stdout).toContain('register --id ID');
    expect(help('help', 'gateway').stdout).toBe(gateway);
    expect(help('gateway', '--port', '0', '--help').stdout).toBe(gateway);
    expect(help('keys', 'create', '-h').stdout).toBe(help('keys', '--help').stdout);
  });
});

describe('log format', () => {
  it('JSON lines into a pipe; one readable line per event with SWITCHYARD_LOG_FORMAT=pretty', async () => {
    const schemas = [uniqueName('sy_cli_logs'), uniqueName('sy_cli_logs')];
    const migrate = (schema: string, format: string) =>
      spawnSync(process.execPath, [CLI, 'migrate'], {
        encoding: 'utf8',
        env: { ...process.env, DATABASE_URL: PG_URL, SWITCHYARD_DATABASE_SCHEMA: schema, SWITCHYARD_LOG_FORMAT: format },
      });
    try {
      const json = migrate(schemas[0] as string, '');
      expect(json.status).toBe(0);
      const events = json.stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { msg: string });
      expect(events.map((e) => e.msg)).toContain('migrations applied');
      const pretty = migrate(schemas[1] as string, 'pretty');
      expect(pretty.status).toBe(0);
      expect(pretty.stdout).not.toMatch(/^\{/m);
      const logged = pretty.stdout.split('\n').filter((line) => line.includes('migrations applied {'));
      expect(logged).toHaveLength(1);
      expect(logged[0]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: migrations applied \{"applied":\["1764300000000_initial",/);
    } finally {
      for (const schema of schemas) await dropSchema(schema);
    }
  });
});
