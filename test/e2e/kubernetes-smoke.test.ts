import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, eventually } from '../helpers/processes.js';
import { isSwitchyard, kubectl, podSpec, render, type Container, type K8sObject, type Probe } from '../helpers/kubernetes.js';
import { dropSchema, PG_URL, REDIS_URL, testRedis, uniqueName } from '../helpers/services.js';

/**
 * The dev overlay's Deployments and Job, run as local processes the way the kubelet would run their
 * containers: each container's args through the image's entrypoint (`node dist/cli/main.js`), its
 * env resolved from the rendered ConfigMaps, Secrets and downward API, its ConfigMap volumes
 * written to files and its emptyDirs made, its readiness judged by its own probes. What differs
 * from a cluster: every Service host is 127.0.0.1 with each container port on a free local port,
 * and Redis and Postgres are the machine's (a key prefix and a schema of this test's own). The
 * migration Job runs first; the model server's agent registers its node with a bootstrap token
 * made through the CLI (as docs/kubernetes.md says); the openai SDK is answered through the gateway.
 */
const tool = kubectl();
if (!tool.available && process.env['CI'] !== undefined && process.env['CI'] !== '') throw new Error(`${tool.problem ?? ''}: CI must run the Kubernetes smoke test`);
if (!tool.available) process.stderr.write(`kubernetes-smoke.test.ts skipped: ${tool.problem ?? ''} (CI is unset)\n`);
const suite = tool.available ? describe : describe.skip;

const schema = uniqueName('sy_k8s');
const prefix = `${schema}:`;
const redis = testRedis(prefix);
const root = mkdtempSync(join(tmpdir(), 'switchyard-k8s-'));
const started: Array<{ name: string; proc: ChildProcess; output: string[] }> = [];
let objects: K8sObject[] = [];
/** `<service>:<port>` and container ports, mapped to free local ports. */
const portMap = new Map<number, number>();
let bootstrapToken = '';

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

function decode(secret: K8sObject, key: string): string {
  const raw = secret.data?.[key];
  if (raw !== undefined) return Buffer.from(raw.replace(/\n/g, ''), 'base64').toString('utf8');
  return secret.stringData?.[key] ?? '';
}

function find(kind: string, name: string): K8sObject {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (o === undefined) throw new Error(`${kind}/${name} is not in the rendered dev overlay`);
  return o;
}

/** Every Service host and container port as this machine has them. */
function localise(text: string): string {
  let out = text;
  for (const svc of objects.filter((o) => o.kind === 'Service')) {
    for (const p of svc.spec.ports as Array<{ port: number }>) {
      out = out.replace(new RegExp(`\\b${svc.metadata.name}:${p.port}\\b`, 'g'), `127.0.0.1:${portMap.get(p.port) ?? p.port}`);
    }
  }
  for (const [from, to] of portMap) {
    if (out === String(from)) return String(to);
    out = out.replace(new RegExp(`:${from}\\b`, 'g'), `:${to}`);
  }
  return out;
}

/** What the kubelet would give a container: its env, its volumes as local paths, its args. */
function containerRun(o: K8sObject, c: Container): { args: string[]; env: Record<string, string> } {
  const spec = podSpec(o);
  const pod = `${o.metadata.name}-0`;
  const dirs = new Map<string, string>();
  for (const m of c.volumeMounts ?? []) {
    const volume = (spec.volumes as Array<{ name: string; configMap?: { name: string }; emptyDir?: unknown }>).find((v) => v.name === m.name);
    const dir = join(root, pod, c.name, m.name);
    mkdirSync(dir, { recursive: true });
    if (volume?.configMap !== undefined) for (const [file, text] of Object.entries(find('ConfigMap', volume.configMap.name).data ?? {})) writeFileSync(join(dir, file), text);
    dirs.set(m.mountPath, dir);
  }
  // A path under a mount is the mount's local directory (the longest mount wins, once).
  const paths = (v: string): string => {
    const mount = [...dirs.keys()].filter((m) => v === m || v.startsWith(`${m}/`)).sort((x, y) => y.length - x.length)[0];
    return mount === undefined ? v : (dirs.get(mount) as string) + v.slice(mount.length);
  };
  const env: Record<string, string> = {};
  for (const ref of c.envFrom ?? []) if (ref.configMapRef !== undefined) Object.assign(env, find('ConfigMap', ref.configMapRef.name).data);
  for (const e of c.env ?? []) {
    const from = e.valueFrom;
    if (from?.secretKeyRef !== undefined) env[e.name] = decode(find('Secret', from.secretKeyRef.name), from.secretKeyRef.key);
    else if (from?.configMapKeyRef !== undefined) env[e.name] = find('ConfigMap', from.configMapKeyRef.name).data?.[from.configMapKeyRef.key] ?? '';
    else if (from?.fieldRef !== undefined) {
      env[e.name] = { 'metadata.name': pod, 'metadata.namespace': o.metadata.namespace ?? '', 'status.podIP': '127.0.0.1', 'status.hostIP': '127.0.0.1' }[from.fieldRef.fieldPath] ?? '';
    } else env[e.name] = (e.value ?? '').replace(/\$\((\w+)\)/g, (_, name: string) => env[name] ?? '');
  }
  for (const [k, v] of Object.entries(env)) env[k] = paths(localise(v));
  // The machine's Redis and Postgres, under this test's own key prefix and schema.
  if (env['REDIS_URL'] !== undefined) Object.assign(env, { REDIS_URL, SWITCHYARD_REDIS_PREFIX: prefix });
  if (env['DATABASE_URL'] !== undefined) Object.assign(env, { DATABASE_URL: PG_URL, SWITCHYARD_DATABASE_SCHEMA: schema });
  const args = (c.args ?? []).map((a) => paths(localise(a.replace(/\$\((\w+)\)/g, (_, name: string) => env[name] ?? ''))));
  return { args, env };
}

function start(o: K8sObject, c: Container): { name: string; proc: ChildProcess; output: string[] } {
  expect(c.command, 'the image entrypoint runs').toBeUndefined();
  const { args, env } = containerRun(o, c);
  // Only the container's env (plus PATH for node's own use): nothing leaks in from this process.
  const proc = spawn(process.execPath, [CLI, ...args], { env: { ...env, PATH: process.env['PATH'] ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  proc.stdout?.on('data', (b: Buffer) => output.push(b.toString('utf8')));
  proc.stderr?.on('data', (b: Buffer) => output.push(b.toString('utf8')));
  const entry = { name: `${o.metadata.name}/${c.name}`, proc, output };
  started.push(entry);
  return entry;
}

/** True once the container's probe passes, judged as the kubelet would (200-399, or a TCP connect). */
async function probe(c: Container, p: Probe | undefined): Promise<boolean> {
  if (p === undefined) return true;
  const portOf = (port: string | number): number => {
    const n = typeof port === 'number' ? port : (c.ports ?? []).find((x) => x.name === port)?.containerPort ?? 0;
    return portMap.get(n) ?? n;
  };
  if (p.httpGet !== undefined) {
    const res = await fetch(`http://127.0.0.1:${portOf(p.httpGet.port)}${p.httpGet.path}`).catch(() => undefined);
    return res !== undefined && res.status >= 200 && res.status < 400;
  }
  if (p.tcpSocket !== undefined) {
    const socket = connect(portOf(p.tcpSocket.port), '127.0.0.1');
    const ok = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('error', () => resolve(false));
    });
    socket.destroy();
    return ok;
  }
  return true;
}

async function ready(entry: { name: string; proc: ChildProcess; output: string[] }, c: Container, p: Probe | undefined): Promise<void> {
  await eventually(async () => {
    if (entry.proc.exitCode !== null) throw new Error(`${entry.name} exited ${entry.proc.exitCode}:\n${entry.output.join('')}`);
    return probe(c, p);
  }, 30_000, `${entry.name} to pass its probe`);
}

function container(o: K8sObject, name: string): Container {
  return (podSpec(o).containers as Container[]).find((c) => c.name === name) as Container;
}

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const admin = decode(find('Secret', 'switchyard-secrets'), 'SWITCHYARD_ADMIN_TOKEN');
  const url = `http://127.0.0.1:${portMap.get(8080) ?? 0}`;
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '', SWITCHYARD_ADMIN_TOKEN: admin, SWITCHYARD_URL: url } });
}

beforeAll(async () => {
  if (!tool.available) return;
  objects = render('dev');
  for (const o of objects) for (const c of podSpec(o)?.containers ?? []) for (const p of (c as Container).ports ?? []) if (!portMap.has(p.containerPort)) portMap.set(p.containerPort, await freePort());
}, 60_000);

afterAll(async () => {
  await Promise.all(started.map(async ({ proc }) => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    }
  }));
  await redis.cleanup();
  await dropSchema(schema);
});

suite('the dev overlay, run as local processes', () => {
  it('runs the migration Job to completion', async () => {
    const job = find('Job', 'switchyard-migrate');
    const c = (podSpec(job).containers as Container[])[0] as Container;
    const entry = start(job, c);
    const [code] = (await once(entry.proc, 'exit')) as [number | null];
    expect(code, entry.output.join('')).toBe(0);
    expect(entry.output.join('')).toMatch(/migrations applied: .*bootstrap-tokens/);
  });

  it('starts the scheduler, worker, gateway and engine; their probes pass', async () => {
    for (const [name, containerName] of [['scheduler', 'scheduler'], ['worker', 'worker'], ['gateway', 'gateway']] as const) {
      const o = find('Deployment', name);
      const c = container(o, containerName);
      // The gateway is live at once; ready (/readyz) only once a node can take traffic.
      await ready(start(o, c), c, name === 'gateway' ? c.startupProbe : c.readinessProbe);
    }
    const model = find('Deployment', 'vllm-llama-3-1-8b');
    const engine = container(model, 'engine');
    expect(isSwitchyard(engine) && engine.args?.[0]).toBe('sim');
    await ready(start(model, engine), engine, engine.readinessProbe);
    const gateway = container(find('Deployment', 'gateway'), 'gateway');
    expect(await probe(gateway, gateway.readinessProbe), 'no node yet: the gateway is not ready').toBe(false);
  }, 90_000);

  it('the agent sidecar registers its node with a bootstrap token made through the CLI; the gateway turns ready', async () => {
    const made = cli('nodes', 'bootstrap-token', 'create', '--region', 'eu-west', '--cluster', 'eu-west-gpu-a', '--expires', '1h', '--max-uses', '3', '--json');
    expect(made.status, made.stderr).toBe(0);
    const token = JSON.parse(made.stdout) as { id: string; token: string; state: string };
    expect(token.state).toBe('active');
    bootstrapToken = token.token;
    // `kubectl create secret generic switchyard-bootstrap --from-literal=token=…`
    const secret = find('Secret', 'switchyard-bootstrap');
    secret.data = { token: Buffer.from(bootstrapToken).toString('base64') };
    delete secret.stringData;

    const model = find('Deployment', 'vllm-llama-3-1-8b');
    const agent = container(model, 'agent');
    await ready(start(model, agent), agent, agent.readinessProbe);
    const gateway = container(find('Deployment', 'gateway'), 'gateway');
    await eventually(() => probe(gateway, gateway.readinessProbe), 20_000, 'the gateway to turn ready');

    const listed = cli('nodes', 'list', '--json');
    const nodes = JSON.parse(listed.stdout) as Array<{ id: string; region: string; cluster: string; url: string; models: string[] }>;
    expect(nodes).toEqual([expect.objectContaining({
      id: 'vllm-llama-3-1-8b-0', region: 'eu-west', cluster: 'eu-west-gpu-a', url: `http://127.0.0.1:${portMap.get(8000) ?? 0}`, models: ['llama-3.1-8b-instruct'],
    })]);
    const tokens = JSON.parse(cli('nodes', 'bootstrap-token', 'list', '--json').stdout) as Array<{ id: string; uses: number }>;
    expect(tokens.find((t) => t.id === token.id)?.uses).toBe(1);
  }, 60_000);

  it('answers an openai SDK request through the gateway with an API key', async () => {
    const created = cli('keys', 'create', '--tenant', 'smoke', '--name', 'k8s-smoke', '--json');
    expect(created.status, created.stderr).toBe(0);
    const key = (JSON.parse(created.stdout) as { key: string }).key;
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${portMap.get(8080) ?? 0}/v1`, apiKey: key, maxRetries: 0 });
    const res = await client.chat.completions.create({ model: 'llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'Hello from Kubernetes' }], max_tokens: 8 });
    expect(res.choices[0]?.message.content?.length).toBeGreaterThan(0);
    const stream = await client.chat.completions.create({ model: 'llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'stream' }], max_tokens: 8, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text.length).toBeGreaterThan(0);
    await expect(new OpenAI({ baseURL: `http://127.0.0.1:${portMap.get(8080) ?? 0}/v1`, apiKey: 'sk-wrong', maxRetries: 0 }).models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  }, 30_000);

  it('a restarted agent container (same pod) reconnects as the same node with its kept credential', async () => {
    const before = JSON.parse(cli('nodes', 'show', 'vllm-llama-3-1-8b-0', '--json').stdout) as { created_at: string };
    const entry = started.find((s) => s.name === 'vllm-llama-3-1-8b/agent');
    entry?.proc.kill('SIGTERM');
    if (entry !== undefined) await once(entry.proc, 'exit');
    // Revoked meanwhile: the credential kept in the agent-state emptyDir is what lets it back in.
    const id = (JSON.parse(cli('nodes', 'bootstrap-token', 'list', '--json').stdout) as Array<{ id: string }>)[0]?.id ?? '';
    expect(cli('nodes', 'bootstrap-token', 'revoke', id).status).toBe(0);
    const model = find('Deployment', 'vllm-llama-3-1-8b');
    const agent = container(model, 'agent');
    await ready(start(model, agent), agent, agent.readinessProbe);
    const metrics = `http://127.0.0.1:${portMap.get(9400) ?? 0}/metrics`;
    await eventually(async () => /^switchyard_agent_connected 1$/m.test(await (await fetch(metrics)).text()), 20_000, 'the agent to reconnect');
    const after = JSON.parse(cli('nodes', 'show', 'vllm-llama-3-1-8b-0', '--json').stdout) as { created_at: string; live: { healthy: boolean } | null };
    expect(after.created_at).toBe(before.created_at);
    expect(JSON.parse(cli('nodes', 'list', '--json').stdout)).toHaveLength(1);
  }, 30_000);
});
