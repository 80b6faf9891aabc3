import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { CLI, startCli } from '../helpers/processes.js';

describe('switchyard start (what `npm start` runs)', () => {
  it('serves the shipped regions.yaml with in-process sims, and stops cleanly on SIGTERM', async () => {
    const proc = await startCli(['start', '--port', '0'], 'gateway listening');
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
