import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { eventually, refusedPort, regionsYaml, startCli, startGatewayProcess, startSimProcess, type RunningProcess } from '../helpers/processes.js';
import { dropSchema, PG_URL, query, REDIS_URL, uniqueName } from '../helpers/services.js';

/**
 * A real Prometheus (Debian's package; `.ci/run` installs it) scrapes a running gateway,
 * scheduler, worker and agent while traffic flows; then every query of every Grafana panel and
 * every alert rule in docker/ is evaluated through Prometheus's HTTP API and must return series,
 * so no panel shows "no data" because of a wrong metric name or label. The Postgres panels run
 * against the real schema. Without a prometheus binary the suite is skipped, except in CI.
 */
const hasPrometheus = spawnSync('prometheus', ['--version']).status === 0;
if (!hasPrometheus && process.env['CI'] !== undefined) throw new Error('prometheus is not installed: .ci/run installs Debian\'s package');

const schema = uniqueName('sy_prom');
const prefix = `${uniqueName('sytest')}:`;
const ADMIN = uniqueName('admin');
const started: RunningProcess[] = [];
let prometheus: ChildProcess | undefined;
let promUrl = '';

const env: NodeJS.ProcessEnv = {
  DATABASE_URL: PG_URL,
  SWITCHYARD_DATABASE_SCHEMA: schema,
  REDIS_URL,
  SWITCHYARD_REDIS_PREFIX: prefix,
  SWITCHYARD_ADMIN_TOKEN: ADMIN,
  SWITCHYARD_AUTH: 'keys',
  SWITCHYARD_REPORT_INTERVAL_MS: '200',
};

async function track(p: Promise<RunningProcess>): Promise<RunningProcess> {
  const proc = await p;
  started.push(proc);
  return proc;
}

async function admin<T>(gw: RunningProcess, path: string, body: unknown): Promise<T> {
  const res = await fetch(`${gw.url}/admin/v1${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status >= 400) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

const hostPort = (url: string): string => new URL(url).host;

async function promQuery(expr: string): Promise<unknown[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { result: unknown[] } };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error ?? res.status}`);
  return body.data?.result ?? [];
}

interface Panel {
  title: string;
  targets: Array<{ expr?: string; rawSql?: string }>;
}
const dashboards = ['fleet-capacity', 'node-detail', 'tenants', 'gateway'].map((f) => ({
  file: f,
  ...(JSON.parse(readFileSync(`docker/grafana/dashboards/${f}.json`, 'utf8')) as { panels: Panel[] }),
}));
const alerts = (parse(readFileSync('docker/prometheus/alerts.yml', 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> }).groups.flatMap((g) => g.rules);

describe.skipIf(!hasPrometheus)('Prometheus scrapes every process; every dashboard and alert query returns series', () => {
  beforeAll(async () => {
    const fakeGpuBin = mkdtempSync(join(tmpdir(), 'switchyard-fake-gpu-'));
    writeFileSync(join(fakeGpuBin, 'nvidia-smi'), '#!/bin/sh\ncat <<EOF\n0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559, 1024, 37, 45, 120.5\nEOF\n');
    chmodSync(join(fakeGpuBin, 'nvidia-smi'), 0o755);
    const [sim, flaky] = await Promise.all([
      track(startSimProcess(['--max-seqs', '16'])),
      // Every answer a 503: retries, upstream errors and 5xx responses get series.
      track(startSimProcess(['--models', 'flaky-model', '--rate-503', '1'])),
    ]);
    const yaml = regionsYaml([
      { id: 'eu-west', nodes: [{ id: 'static-1', url: sim.url, maxSequences: 16 }, { id: 'flaky', url: flaky.url, models: ['flaky-model'] }] },
      { id: 'eu-north', nodes: [{ id: 'dead', url: `http://127.0.0.1:${await refusedPort()}` }] },
    ]);
    const gw = await track(startGatewayProcess(yaml, [], env));
    const config = gw.proc.spawnargs[gw.proc.spawnargs.indexOf('--config') + 1] as string;
    const [scheduler, worker] = await Promise.all([
      track(startCli(['scheduler', '--scheduler-port', '0', '--port', '0', '--config', config], 'scheduler listening', env)),
      track(startCli(['worker', '--port', '0', '--config', config], 'worker running', env)),
    ]);
    const grpc = scheduler.output.map((l) => /"msg":"scheduler listening"/.test(l) ? (JSON.parse(l) as { url: string }).url : undefined).find((u) => u !== undefined) as string;
    const node = await admin<{ join_token: string }>(gw, '/nodes', {
      id: 'gpu-live', region: 'eu-west', cluster: 'eu-west-c', url: sim.url, engine: 'vllm', models: ['sim-small'], capacity: { tokensPerSecond: 1000, maxSequences: 16 },
    });
    const agent = await track(
      startCli(['agent', '--scheduler', grpc, '--node-id', 'gpu-live', '--join-token', node.join_token, '--engine-url', sim.url, '--metrics-port', '0'], 'agent running', {
        PATH: `${fakeGpuBin}:${process.env['PATH'] ?? ''}`,
      }),
    );
    // The scheduler's /metrics listens on its own HTTP port, logged once it is up.
    const metricsLine = (): string | undefined => scheduler.output.find((l) => l.includes('"msg":"scheduler metrics listening"'));
    await eventually(async () => Promise.resolve(metricsLine() !== undefined), 10_000, 'the scheduler metrics port');
    const schedulerHttp = (JSON.parse(metricsLine() as string) as { url: string }).url;

    const dir = mkdtempSync(join(tmpdir(), 'switchyard-prometheus-'));
    const promPort = await refusedPort();
    promUrl = `http://127.0.0.1:${promPort}`;
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: ['${join(process.cwd(), 'docker/prometheus/alerts.yml')}']`,
        'scrape_configs:',
        ...[
          ['gateway', gw.url],
          ['scheduler', schedulerHttp],
          ['worker', worker.url],
          ['agent', agent.url],
        ].map(([job, url]) => `  - { job_name: ${job}, static_configs: [{ targets: ['${hostPort(url as string)}'] }] }`),
      ].join('\n') + '\n',
    );
    prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`], {
      stdio: 'ignore',
    });
    await eventually(async () => (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.ok === true, 30_000, 'prometheus to be ready');
    await eventually(async () => (await promQuery('up == 1')).length === 4, 30_000, 'all four targets up');

    // Traffic that gives every panel something to show.
    const key = await admin<{ key: string }>(gw, '/keys', { tenant: 'acme', name: 'k', limits: { requestsPerMinute: 1000, tokensPerMinute: 10_000_000, maxConcurrent: 100 } });
    const tight = await admin<{ key: string }>(gw, '/keys', { tenant: 'tight', name: 'k', limits: { requestsPerMinute: 1, tokensPerMinute: 0, maxConcurrent: 0 } });
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key.key, maxRetries: 0 });
    for (let i = 0; i < 5; i++) {
      await client.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: `hi ${i}` }], max_tokens: 8 });
      const stream = await client.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: `stream ${i}` }], max_tokens: 8, stream: true });
      for await (const _ of stream) {
        // consume
      }
    }
    await client.chat.completions.create({ model: 'flaky-model', messages: [{ role: 'user', content: 'x' }] }).catch(() => undefined);
    const limited = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: tight.key, maxRetries: 0 });
    for (let i = 0; i < 2; i++) await limited.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 }).catch(() => undefined);
    const job = await client.responses.create({ model: 'sim-small', input: 'in the background', background: true, max_output_tokens: 16 });
    await eventually(async () => ['completed', 'incomplete'].includes((await client.responses.retrieve(job.id)).status ?? ''), 20_000, 'the background response');
  }, 120_000);

  afterAll(async () => {
    if (prometheus !== undefined && prometheus.exitCode === null) {
      prometheus.kill('SIGTERM');
      await once(prometheus, 'exit');
    }
    await Promise.all(started.map((p) => p.stop()));
    await dropSchema(schema);
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });

  it.each(dashboards.flatMap((d) => d.panels.flatMap((p) => p.targets.filter((t) => t.expr !== undefined).map((t) => [`${d.file} / ${p.title}`, t.expr as string] as const))))(
    'panel %s',
    async (_title, expr) => {
      const resolved = expr.replaceAll('$node', '.*');
      await eventually(async () => (await promQuery(resolved)).length > 0, 40_000, `series for ${resolved}`);
    },
    60_000,
  );

  it.each(alerts.map((a) => [a.alert, a.expr] as const))('alert %s', async (_name, expr) => {
    // The alert's condition without its threshold: the series it compares must exist.
    const measured = expr.trim().replace(/\s*>\s*[\d.]+\s*$/, '');
    await eventually(async () => (await promQuery(measured)).length > 0, 40_000, `series for ${measured}`);
  }, 60_000);

  it('every process reports switchyard_build_info with its role', async () => {
    await eventually(async () => (await promQuery('switchyard_build_info')).length === 4, 20_000, 'build info of four processes');
    const roles = (await promQuery('switchyard_build_info')) as Array<{ metric: { role: string } }>;
    expect(roles.map((r) => r.metric.role).sort()).toEqual(['agent', 'gateway', 'scheduler', 'worker']);
  });

  it('the alert rules loaded into Prometheus', async () => {
    const res = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as { data: { groups: Array<{ rules: Array<{ name: string; health: string }> }> } };
    const rules = res.data.groups.flatMap((g) => g.rules);
    expect(rules.map((r) => r.name).sort()).toEqual(alerts.map((a) => a.alert).sort());
  });

  it('the Postgres panels (tenants) run against the real schema', async () => {
    for (const d of dashboards) {
      for (const p of d.panels) {
        for (const t of p.targets) {
          if (t.rawSql === undefined) continue;
          const sql = t.rawSql.replaceAll('$__timeFilter(created_at)', "created_at > now() - interval '1 hour'").replaceAll('usage_records', `"${schema}".usage_records`);
          await eventually(async () => (await query(sql)).length > 0, 20_000, `rows for ${p.title}`);
        }
      }
    }
  });
});

