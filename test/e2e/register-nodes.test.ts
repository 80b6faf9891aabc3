import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startCli, type RunningProcess } from '../helpers/processes.js';

/**
 * docker/register-nodes.sh (compose's one-shot `register` service), run for real against a
 * gateway on docker/regions.yaml, twice, as `docker compose up` run twice does.
 */
const ADMIN = 'register-script-admin';
let gw: RunningProcess | undefined;
afterAll(async () => {
  await gw?.stop();
});

describe('docker/register-nodes.sh', () => {
  it('writes each node its own 0400 token, keeps tokens when run again, and re-issues only a missing one', async () => {
    gw = await startCli(['gateway', '--config', 'docker/regions.yaml', '--region', 'eu-west', '--port', '0'], 'gateway listening', { SWITCHYARD_ADMIN_TOKEN: ADMIN });
    const tokens = mkdtempSync(join(tmpdir(), 'switchyard-tokens-'));
    for (const node of ['sim-1', 'sim-2']) mkdirSync(join(tokens, node));
    const run = () =>
      spawnSync('sh', ['docker/register-nodes.sh'], {
        encoding: 'utf8',
        env: { ...process.env, SWITCHYARD_URL: gw?.url, SWITCHYARD_ADMIN_TOKEN: ADMIN, TOKENS_DIR: tokens, AGENT_UID: String(process.getuid?.() ?? 0) },
      });
    const token = (node: string) => readFileSync(join(tokens, node, 'join-token'), 'utf8');

    const first = run();
    expect(first.stderr).toBe('');
    expect(first.stdout).toContain('registered sim-1 (new join token)');
    const [t1, t2] = [token('sim-1'), token('sim-2')];
    expect(t1).toMatch(/^sy-join-/);
    expect(statSync(join(tokens, 'sim-1', 'join-token')).mode & 0o777).toBe(0o400);

    const second = run();
    expect(second.stdout).toContain('registered sim-1 (already registered: join token kept)');
    expect([token('sim-1'), token('sim-2')]).toEqual([t1, t2]);

    rmSync(join(tokens, 'sim-2', 'join-token'));
    const third = run();
    expect(third.stdout).toContain('registered sim-2 (new join token)');
    expect(token('sim-1')).toBe(t1);
    expect(token('sim-2')).not.toBe(t2);
    rmSync(tokens, { recursive: true, force: true });
  });
});
