import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import OpenAI from 'openai';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, refusedPort, startCli, startSimProcess, type RunningProcess } from '../helpers/processes.js';

/**
 * The operator console in a real browser (Debian's chromium, driven by playwright-core) against
 * real processes: `switchyard start` (gateway, scheduler, one declared sim with its agent) plus
 * `switchyard sim` processes registered through the admin API, each joined by its own
 * `switchyard agent`. Every page gets an axe-core scan and a screenshot in docs/console/.
 * Without chromium the suite is skipped, except in CI (.ci/run installs it).
 */
const CHROMIUM = process.env['SWITCHYARD_CHROMIUM'] ?? '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium && process.env['CI'] !== undefined) throw new Error(`chromium is not installed at ${CHROMIUM}: .ci/run installs Debian's package`);
if (!hasChromium) process.stderr.write(`console.test.ts skipped: no chromium at ${CHROMIUM} (apt-get install chromium)\n`);

const ADMIN = 'console-admin-token';
const SHOTS = join(process.cwd(), 'docs', 'console');
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const started: RunningProcess[] = [];
let gateway: RunningProcess;
let schedulerTarget: string;
let browser: Browser;
let page: Page;
const cspViolations: string[] = [];

async function track(p: Promise<RunningProcess>): Promise<RunningProcess> {
  const proc = await p;
  started.push(proc);
  return proc;
}

async function api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${gateway.url}/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function registerSim(id: string, sim: RunningProcess): Promise<void> {
  const node = await api('POST', '/nodes', {
    id, region: 'eu-west', cluster: 'eu-west-b', url: sim.url, engine: 'vllm', models: ['m'], capacity: { tokensPerSecond: 2000, maxSequences: 16 },
  });
  await track(startCli(['agent', '--scheduler', schedulerTarget, '--node-id', id, '--join-token', String(node['join_token']), '--engine-url', sim.url, '--metrics-port', '0'], 'agent running'));
}

/** axe-core in the page (evaluated over the DevTools protocol, so the page's CSP stays strict). */
async function axeScan(): Promise<Array<{ id: string; impact: string; nodes: number }>> {
  await page.evaluate(AXE);
  // Strings, not functions: these run in the page, and this package's types have no DOM.
  const result = (await page.evaluate(
    `axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact ?? '', nodes: v.nodes.length })))`,
  )) as Array<{ id: string; impact: string; nodes: number }>;
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function go(path: string, heading: string): Promise<void> {
  await page.click(`nav >> text=${heading}`);
  await page.waitForURL(`**/console#/${path}`);
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

const nodeRow = (id: string) => page.locator(`tr[data-node="${id}"]`);

function sdk(apiKey: string): OpenAI {
  return new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey, maxRetries: 0 });
}

async function servedBy(client: OpenAI): Promise<string | null> {
  const { response } = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }).withResponse();
  return response.headers.get('x-switchyard-node');
}

describe.skipIf(!hasChromium)('the operator console in chromium', () => {
  let trafficKey: string;

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    const staticPort = await refusedPort();
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const config = join(mkdtempSync(join(tmpdir(), 'switchyard-console-')), 'regions.yaml');
    writeFileSync(
      config,
      `regions:
  - id: eu-west
    name: Europe West
    residency: eu
    clusters:
      - id: eu-west-a
        nodes:
          - { id: declared-0, url: 'http://127.0.0.1:${staticPort}', engine: sim, models: [m], capacity: { tokensPerSecond: 500, maxSequences: 2 }, sim: { ttftMs: 5, seed: 1 } }
`,
    );
    gateway = await track(
      startCli(['start', '--config', config, '--host', '127.0.0.1', '--port', '0', '--scheduler-port', '0'], 'gateway listening', {
        REDIS_URL: '', SWITCHYARD_ADMIN_TOKEN: ADMIN, SWITCHYARD_AUTH: 'keys', SWITCHYARD_USAGE_FLUSH_INTERVAL_MS: '200',
      }),
    );
    const line = gateway.output.find((l) => l.includes('"msg":"scheduler listening"'));
    schedulerTarget = (JSON.parse(line ?? '{}') as { url: string }).url;
    const [s1, s2] = await Promise.all([track(startSimProcess(['--models', 'm'])), track(startSimProcess(['--models', 'm']))]);
    await registerSim('gpu-1', s1);
    await registerSim('gpu-2', s2);
    trafficKey = String((await api('POST', '/keys', { tenant: 'acme', name: 'traffic', limits: { requestsPerMinute: 100000, tokensPerMinute: 10000000, maxConcurrent: 64 } }))['key']);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
    page = await context.newPage();
    page.on('console', (m) => {
      if (m.text().includes('Content Security Policy')) cspViolations.push(m.text());
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all(started.map((p) => p.stop()));
  });

  it('logs in with the admin token: an httpOnly SameSite=Strict cookie, nothing in web storage, a strict CSP', async () => {
    const res = await page.goto(`${gateway.url}/console`);
    expect(res?.headers()['content-security-policy']).toContain("script-src 'self'");
    expect(res?.headers()['content-security-policy']).not.toContain('unsafe-inline');
    await page.getByLabel('Admin token').waitFor();
    expect(await axeScan()).toEqual([]);
    await page.getByLabel('Admin token').fill('wrong-token');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: 'not the admin token' }).waitFor();
    await shot('login');

    await page.getByLabel('Admin token').fill(ADMIN);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Fleet' }).waitFor();
    const [cookie] = (await page.context().cookies()).filter((c) => c.name === 'sy_console');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    const stored = (await page.evaluate('JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage }, cookies: document.cookie })')) as string;
    expect(stored).not.toContain(ADMIN);
    expect(stored).not.toContain('sy_console');
  });

  it('shows the nodes with live load; a drained node stops getting requests (openai SDK meanwhile)', async () => {
    const client = sdk(trafficKey);
    let traffic = true;
    const served = new Set<string>();
    // Batches of concurrent requests, more than the declared node's two sequences, so every node gets some.
    const loop = (async () => {
      while (traffic) for (const node of await Promise.all(Array.from({ length: 8 }, () => servedBy(client)))) served.add(node ?? '');
    })();
    try {
      for (const id of ['declared-0', 'gpu-1', 'gpu-2']) await nodeRow(id).locator('.badge', { hasText: 'Serving' }).waitFor();
      // Live: the one stream's events carry the tokens/s this gateway relays from each node.
      await page.waitForFunction(
      () => {
        // A function (a string would be eval'd in the page, which its CSP forbids); typed here without the DOM lib.
        const doc = (globalThis as unknown as { document: { querySelectorAll(s: string): ArrayLike<{ textContent: string | null }> } }).document;
        return Array.from(doc.querySelectorAll('tr[data-node] td:nth-child(7)')).some((td) => /^[1-9]/.test(td.textContent ?? ''));
      },
      undefined,
      { timeout: 15_000 },
    );
      expect(await axeScan()).toEqual([]);
      await shot('fleet');

      await eventually(async () => served.has('gpu-1'), 10_000, 'gpu-1 to serve some of the traffic');
      await nodeRow('gpu-1').getByRole('button', { name: 'Drain' }).click();
      await nodeRow('gpu-1').getByRole('button', { name: 'Confirm' }).click();
      await nodeRow('gpu-1').locator('.badge', { hasText: 'Draining' }).waitFor();
    } finally {
      traffic = false;
      await loop;
    }
    // The console's view is this gateway's fleet: once it says Draining, placement skips the node.
    const after = await Promise.all(Array.from({ length: 24 }, () => servedBy(client)));
    expect(after).not.toContain('gpu-1');
    expect(new Set(after).size).toBeGreaterThan(1);

    await nodeRow('gpu-1').getByRole('button', { name: 'Resume' }).click();
    await nodeRow('gpu-1').getByRole('button', { name: 'Confirm' }).click();
    await nodeRow('gpu-1').locator('.badge', { hasText: 'Serving' }).waitFor();
  });

  it('registers a node, shows its join token once in the exact agent command, and the agent started with it joins', async () => {
    const sim = await track(startSimProcess(['--models', 'm']));
    const form = page.locator('form', { has: page.getByLabel('Node id') });
    await form.getByLabel('Node id').fill('gpu-3');
    await form.getByLabel('Region').selectOption('eu-west');
    await form.getByLabel('Cluster').fill('eu-west-b');
    await form.getByLabel('Model server URL').fill(sim.url);
    await form.getByLabel('Engine').selectOption('vllm');
    await form.getByLabel('Models (comma-separated)').fill('m');
    await form.getByLabel('Scheduler address agents reach').fill(schedulerTarget);
    await form.getByRole('button', { name: 'Register' }).click();
    const command = (await page.getByTestId('secret').textContent()) ?? '';
    expect(command).toMatch(/^switchyard agent --scheduler \S+ --node-id gpu-3 --join-token sy-join-\S+ --engine-url \S+$/);
    await shot('fleet-register');
    const args = command.split(' ').slice(1);
    // The shown command as printed; only the agent's own metrics port is made free for the test.
    await track(startCli([...args, '--metrics-port', '0'], 'agent running'));
    await nodeRow('gpu-3').locator('.badge', { hasText: 'Serving' }).waitFor({ timeout: 15_000 });
  });

  it('creates a key that works with the SDK, shows its usage, and revoking it gives 401', async () => {
    await go('keys', 'Keys and tenants');
    const form = page.locator('form', { has: page.getByLabel('Requests per minute') });
    await form.getByLabel('Tenant').fill('webshop');
    await form.getByLabel('Name').fill('checkout');
    await form.getByLabel('Priority').selectOption('interactive');
    await form.getByRole('button', { name: 'Create key' }).click();
    const secret = (await page.getByTestId('secret').textContent()) ?? '';
    expect(secret).toMatch(/^sk-sy-/);
    const row = page.locator('tr[data-key]', { hasText: 'checkout' });
    const keyId = (await row.getAttribute('data-key')) ?? '';

    const client = sdk(secret);
    for (let i = 0; i < 3; i++) expect(await servedBy(client)).toMatch(/^(declared-0|gpu-\d)$/);
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Keys and tenants' }).waitFor();
    expect(await axeScan()).toEqual([]);
    await shot('keys');

    await go('usage', 'Usage');
    await page.getByRole('button', { name: 'Last hour' }).click();
    await page.getByLabel('Group by').selectOption('key');
    const usageRow = page.getByTestId('usage-table').locator('tr', { hasText: keyId });
    await eventually(async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      return (await usageRow.count()) === 1 && (await usageRow.locator('td').first().textContent()) === '3';
    }, 15_000, 'the key\'s three requests in the usage table');
    const download = page.waitForEvent('download');
    await page.getByRole('button', { name: 'Export CSV' }).click();
    const csv = readFileSync((await (await download).path()) ?? '', 'utf8');
    expect(csv).toContain(`${keyId},3,`);
    expect(await axeScan()).toEqual([]);
    await shot('usage');

    await go('keys', 'Keys and tenants');
    await row.getByRole('button', { name: 'Revoke' }).click();
    await row.getByRole('button', { name: 'Confirm' }).click();
    await row.locator('.badge', { hasText: 'Revoked' }).waitFor();
    await eventually(async () => {
      try {
        await servedBy(client);
        return false;
      } catch (err) {
        return err instanceof OpenAI.AuthenticationError;
      }
    }, 5000, 'the revoked key to be refused with 401');
  });

  it('shows queues and background responses', async () => {
    await go('queues', 'Queues and jobs');
    await page.getByRole('heading', { name: 'Background responses' }).waitFor();
    await page.getByText('No background responses are waiting or running.').waitFor();
    expect(await axeScan()).toEqual([]);
    await shot('queues');
  });

  it('works at phone width and in the dark theme', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await go('fleet', 'Fleet');
    await nodeRow('gpu-2').locator('.badge', { hasText: 'Serving' }).waitFor();
    await shot('fleet-phone');
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.getByLabel('Theme').selectOption('dark');
    expect(await page.evaluate('document.documentElement.dataset.theme')).toBe('dark');
    expect(await axeScan()).toEqual([]);
    await shot('fleet-dark');
    await page.getByLabel('Theme').selectOption('light');
  });

  it('refuses cookie requests without the CSRF token or from another origin, and logout ends the session', async () => {
    const [cookie] = (await page.context().cookies()).filter((c) => c.name === 'sy_console');
    const jar = `sy_console=${cookie?.value ?? ''}`;
    const session = (await (await fetch(`${gateway.url}/console/api/session`, { headers: { cookie: jar } })).json()) as { csrf_token: string };
    const body = JSON.stringify({ id: 'csrf-probe', weight: 1 });
    const post = (headers: Record<string, string>) =>
      fetch(`${gateway.url}/admin/v1/tenants`, { method: 'POST', headers: { cookie: jar, 'content-type': 'application/json', ...headers }, body });
    expect((await post({})).status).toBe(403);
    expect((await post({ 'x-switchyard-csrf': session.csrf_token, origin: 'https://evil.example' })).status).toBe(403);
    expect((await post({ 'x-switchyard-csrf': session.csrf_token })).status).toBe(201);
    expect((await fetch(`${gateway.url}/admin/v1/keys`, { headers: { cookie: jar } })).status).toBe(200);

    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Admin token').waitFor();
    const gone = await fetch(`${gateway.url}/admin/v1/keys`, { headers: { cookie: jar } });
    expect(gone.status).toBe(401);
    expect(((await gone.json()) as { error: { message: string } }).error.message).toMatch(/session has expired or was ended/);
    expect(cspViolations).toEqual([]);
  });

  it('rate-limits failed logins', async () => {
    const login = (token: string) =>
      fetch(`${gateway.url}/console/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await login('guess')).status);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10);
    const limited = await login(ADMIN);
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).not.toBeNull();
  });
});
