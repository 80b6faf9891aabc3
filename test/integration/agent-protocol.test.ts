import { spawnSync } from 'node:child_process';
import { on, once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.js';
import { agentService, type AgentMessage, type LoadReport, type SchedulerCommand } from '../../proto/agent-protocol.js';
import { AgentService, type AgentView } from '../../scheduler/agents/agent-service.js';
import { AgentReporter } from '../../gpu-agent/reporter.js';
import { startAgent } from '../../gpu-agent/agent.js';

const log = createLogger({ name: 'test', level: 'silent' });
const TOKENS = new Map([['node-a', 'secret-a']]);
const auth = { verify: async (id: string, token: string) => TOKENS.get(id) === token };
const open: Array<{ stop(): unknown }> = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.stop();
});

const hello = (token = 'secret-a') => ({ node_id: 'node-a', join_token: token, engine_kind: 'vllm', engine_version: '0.11', models: ['m'], agent_version: 'test' });
const report = (over: Partial<LoadReport['engine']> = {}, gpu: LoadReport['gpus'][number] = { index: 0, uuid: 'GPU-1', name: 'H100', utilization: 0.5, memory_used_bytes: 10, memory_total_bytes: 80, temperature_celsius: 60, power_watts: 300 }): LoadReport => ({
  timestamp_ms: Date.now(),
  gpus: [gpu],
  engine: { running_requests: 3, waiting_requests: 1, kv_cache_usage: 0.25, prompt_tokens_total: 100, generation_tokens_total: 200, ...over },
});

async function scheduler(port = 0, extra: Partial<ConstructorParameters<typeof AgentService>[0]> = {}) {
  const events = new EventEmitter();
  const counts = { rejected: new Map<string, number>(), clamped: [] as string[] };
  const service = new AgentService({
    auth, log, reportIntervalMs: 100,
    onReport: (v: AgentView) => events.emit('report', v),
    onRejected: (r) => {
      counts.rejected.set(r, (counts.rejected.get(r) ?? 0) + 1);
      events.emit('rejected', r);
    },
    onClamped: (f) => counts.clamped.push(f),
    ...extra,
  });
  const bound = await service.start('127.0.0.1', port);
  open.push(service);
  return { service, port: bound, events, counts };
}

function rawCall(port: number) {
  const { Client } = agentService();
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Connect(): grpc.ClientDuplexStream<AgentMessage, SchedulerCommand> };
  open.push({ stop: () => client.close() });
  return client.Connect();
}

describe('agent protocol', () => {
  it('a wrong or unknown join token gets UNAUTHENTICATED and nothing is accepted', async () => {
    const { port, service, counts } = await scheduler();
    for (const h of [hello('wrong'), { ...hello(), node_id: 'node-unknown' }]) {
      const call = rawCall(port);
      call.write({ hello: h });
      const [err] = (await once(call, 'error')) as [grpc.ServiceError];
      expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    }
    expect(counts.rejected.get('unauthenticated')).toBe(2);
    expect(service.agents.size).toBe(0);
  });

  it('the first message must be Hello', async () => {
    const { port } = await scheduler();
    const call = rawCall(port);
    call.write({ report: report() });
    const [err] = (await once(call, 'error')) as [grpc.ServiceError];
    expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it('reports arrive as sent; numbers the agent could not read stay unknown, not 0', async () => {
    const { port, events } = await scheduler();
    const call = rawCall(port);
    call.write({ hello: hello() });
    const [welcome] = (await once(call, 'data')) as [SchedulerCommand];
    expect(welcome.welcome?.report_interval_ms).toBe(100);
    call.write({ report: report({}, { index: 0, uuid: 'GPU-1', name: 'H100 MIG' }) });
    const [view] = (await once(events, 'report')) as [AgentView];
    expect(view.hello).not.toHaveProperty('join_token');
    expect(view.lastReport?.engine).toMatchObject({ running_requests: 3, waiting_requests: 1, kv_cache_usage: 0.25, generation_tokens_total: 200 });
    const gpu = view.lastReport?.gpus[0];
    expect(gpu?.name).toBe('H100 MIG');
    expect(gpu?.utilization).toBeUndefined();
    expect(gpu?.temperature_celsius).toBeUndefined();
    call.end();
  });

  it('bad values are clamped or dropped, logged and counted, never trusted', async () => {
    const { port, events, counts } = await scheduler();
    const call = rawCall(port);
    call.write({ hello: hello() });
    await once(call, 'data');
    call.write({
      report: {
        ...report(
          { running_requests: Number.NaN, waiting_requests: -4, kv_cache_usage: 1.7, generation_tokens_total: -1 },
          { index: 0, uuid: 'u', name: 'n', utilization: 3, temperature_celsius: 999, memory_total_bytes: 80, memory_used_bytes: 120, power_watts: Number.POSITIVE_INFINITY },
        ),
        timestamp_ms: 1,
      },
    });
    const [view] = (await once(events, 'report')) as [AgentView];
    expect(view.lastReport?.engine).toEqual({ running_requests: 0, waiting_requests: 0, kv_cache_usage: 1, prompt_tokens_total: 100 });
    expect(view.lastReport?.gpus[0]).toMatchObject({ utilization: 1, memory_used_bytes: 80, memory_total_bytes: 80 });
    expect(view.lastReport?.gpus[0]?.temperature_celsius).toBeUndefined();
    expect(view.lastReport?.gpus[0]?.power_watts).toBeUndefined();
    expect(Math.abs((view.lastReport?.atMs ?? 0) - Date.now())).toBeLessThan(5000); // a skewed clock is not believed
    expect(counts.clamped.sort()).toEqual(
      ['generation_tokens_total', 'gpus[0].memory_used_bytes', 'gpus[0].power_watts', 'gpus[0].temperature_celsius', 'gpus[0].utilization', 'kv_cache_usage', 'running_requests', 'timestamp', 'waiting_requests'].sort(),
    );
    call.end();
  });

  it('oversized messages are refused', async () => {
    const { port } = await scheduler(0, { maxMessageBytes: 4096 });
    const call = rawCall(port);
    call.write({ hello: { ...hello(), models: Array.from({ length: 500 }, (_, i) => `model-${i}-with-a-long-name`) } });
    const [err] = (await once(call, 'error')) as [grpc.ServiceError];
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it('the reporter: reports on the interval, obeys commands, reconnects after a scheduler restart', async () => {
    const first = await scheduler();
    const commands: SchedulerCommand[] = [];
    let collected = 0;
    const reporter = new AgentReporter({
      target: `127.0.0.1:${first.port}`, hello: hello(), log, backoffBaseMs: 20, backoffMaxMs: 200,
      collect: async () => (collected++, report()),
      onCommand: (c) => commands.push(c),
    });
    open.push(reporter);
    reporter.start();
    await once(first.events, 'report');
    await once(first.events, 'report'); // a second report: the interval timer runs
    expect(first.service.send('node-a', { drain: {} })).toBe(true);
    expect(first.service.send('node-a', { set_report_interval: { report_interval_ms: 250 } })).toBe(true);
    await expect.poll(() => commands.map((c) => Object.keys(c).find((k) => k !== 'body' && c[k as keyof SchedulerCommand] != null))).toEqual(['welcome', 'drain', 'set_report_interval']);
    await expect.poll(() => reporter.intervalMs).toBe(250);

    await first.service.stop(100);
    const second = await scheduler(first.port);
    await once(second.events, 'report');
    expect(reporter.connected).toBe(true);
    expect(collected).toBeGreaterThan(2);
  });
});

describe('agent protocol over TLS, and the agent with a DCGM exporter', () => {
  it('an agent that trusts the CA connects; a plaintext one cannot', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-tls-'));
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { encoding: 'utf8' });
    expect(made.status).toBe(0);
    const cert = readFileSync(join(dir, 'cert.pem'));
    const { port, events } = await scheduler(0, { tls: { cert, key: readFileSync(join(dir, 'key.pem')) } });
    const secure = new AgentReporter({ target: `127.0.0.1:${port}`, hello: hello(), log, collect: async () => report(), tlsCa: cert });
    open.push(secure);
    secure.start();
    await once(events, 'report');
    const plain = rawCall(port);
    plain.write({ hello: hello() });
    const [err] = (await once(plain, 'error')) as [grpc.ServiceError];
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
  });

  it('reads the GPUs from a DCGM exporter when told to', async () => {
    const dcgm = createServer((_req, res) => res.end(readFileSync('test/fixtures/probes/dcgm.prom')));
    dcgm.listen(0, '127.0.0.1');
    await once(dcgm, 'listening');
    open.push({ stop: () => new Promise((r) => dcgm.close(r)) });
    const dcgmPort = (dcgm.address() as { port: number }).port;
    const { port, events } = await scheduler();
    const agent = await startAgent({
      schedulerTarget: `127.0.0.1:${port}`, nodeId: 'node-a', joinToken: 'secret-a', engineUrl: 'http://127.0.0.1:9', host: '127.0.0.1',
      metricsPort: 0, log, version: 'test', dcgmUrl: `http://127.0.0.1:${dcgmPort}/metrics`,
    });
    open.push(agent);
    const [view] = (await once(events, 'report')) as [AgentView];
    expect(view.lastReport?.gpus.length).toBeGreaterThan(0);
    expect(view.lastReport?.gpus[0]?.utilization).toBeGreaterThanOrEqual(0);
    expect(view.lastReport?.engine.running_requests).toBe(0); // no engine answering: nothing invented
    const metrics = await (await fetch(`${agent.metricsUrl}/metrics`)).text();
    expect(metrics).toMatch(/switchyard_agent_gpu_memory_total_bytes\{gpu="0"/);
  });

  it('reports the MIG instances of the engine\'s pod, with parent GPU and profile, to the scheduler and on /metrics', async () => {
    const dcgm = createServer((_req, res) => res.end(readFileSync('test/fixtures/probes/dcgm-mig-k8s.prom')));
    dcgm.listen(0, '127.0.0.1');
    await once(dcgm, 'listening');
    open.push({ stop: () => new Promise((r) => dcgm.close(r)) });
    const dcgmPort = (dcgm.address() as { port: number }).port;
    const { port, events } = await scheduler();
    const agent = await startAgent({
      schedulerTarget: `127.0.0.1:${port}`, nodeId: 'node-a', joinToken: 'secret-a', engineUrl: 'http://127.0.0.1:9', host: '127.0.0.1',
      metricsPort: 0, log, version: 'test', dcgmUrl: `http://127.0.0.1:${dcgmPort}/metrics`, pod: { pod: 'vllm-llama-0', namespace: 'inference' },
    });
    open.push(agent);
    const [view] = (await once(events, 'report')) as [AgentView];
    expect(view.lastReport?.gpus).toEqual([{
      index: 0, uuid: 'GPU-6a1f0c2e-9d4b-4e73-b1a8-3c5d7e9f0a12', name: 'NVIDIA H100 80GB HBM3', utilization: 0.874213,
      memory_used_bytes: 35614 * 2 ** 20, memory_total_bytes: 40192 * 2 ** 20, temperature_celsius: 58, power_watts: 402.118,
      mig_gpu_instance_id: 2, mig_profile: '3g.40gb',
    }]);
    const metrics = await (await fetch(`${agent.metricsUrl}/metrics`)).text();
    expect(metrics).toContain('switchyard_agent_gpu_utilization_ratio{gpu="0",uuid="GPU-6a1f0c2e-9d4b-4e73-b1a8-3c5d7e9f0a12",name="NVIDIA H100 80GB HBM3",mig_instance="2",mig_profile="3g.40gb"} 0.874213');
    expect(metrics).not.toContain('mig_instance="13"');
  });

  it('a whole GPU has no MIG fields; an instance id past any real one is dropped and counted', async () => {
    const { port, events, counts } = await scheduler();
    const call = rawCall(port);
    call.write({ hello: hello() });
    await once(call, 'data');
    call.write({ report: { ...report(), gpus: [
      { index: 0, uuid: 'GPU-1', name: 'H100' },
      { index: 1, uuid: 'GPU-2', name: 'H100', mig_gpu_instance_id: 70_000, mig_profile: '1g.10gb' },
    ] } });
    const [view] = (await once(events, 'report')) as [AgentView];
    expect(view.lastReport?.gpus[0]).not.toHaveProperty('mig_gpu_instance_id');
    expect(view.lastReport?.gpus[0]).not.toHaveProperty('mig_profile');
    expect(view.lastReport?.gpus[1]).not.toHaveProperty('mig_gpu_instance_id');
    expect(counts.clamped).toEqual(['gpus[1].mig_gpu_instance_id']);
    call.end();
  });
});

describe('an agent the scheduler refuses', () => {
  it('turns unhealthy: /healthz answers 503 naming the reason, /metrics says refused', async () => {
    const { port } = await scheduler();
    const agent = await startAgent({
      schedulerTarget: `127.0.0.1:${port}`, nodeId: 'node-a', joinToken: 'rotated-away', engineUrl: 'http://127.0.0.1:9', host: '127.0.0.1',
      metricsPort: 0, log, version: 'test', exec: async () => ({ exitCode: 127, stdout: '', stderr: '' }),
    });
    open.push(agent);
    await expect.poll(async () => (await fetch(`${agent.metricsUrl}/healthz`)).status).toBe(503);
    const body = await (await fetch(`${agent.metricsUrl}/healthz`)).text();
    expect(body).toContain('UNAUTHENTICATED');
    expect(body).toContain('unknown node or wrong join token');
    const metrics = await (await fetch(`${agent.metricsUrl}/metrics`)).text();
    expect(metrics).toMatch(/^switchyard_agent_refused 1$/m);
    expect(metrics).toMatch(/^switchyard_agent_refused_total\{code="unauthenticated"\} [1-9]/m);
    expect(metrics).toMatch(/^switchyard_agent_connected 0$/m);
  });

  it('logs a refusal once, keeps retrying with backoff, and is healthy again once welcomed', async () => {
    let accept = false;
    const { port, events } = await scheduler(0, { auth: { verify: async () => accept } });
    const lines: Array<{ level: number; msg: string; code?: string }> = [];
    const capture = createLogger({ name: 'test', level: 'debug', format: 'json' }, {
      write: (line: string) => lines.push(JSON.parse(line) as (typeof lines)[number]),
    } as unknown as NodeJS.WritableStream);
    const refused: string[] = [];
    const reporter = new AgentReporter({
      target: `127.0.0.1:${port}`, hello: hello(), log: capture, backoffBaseMs: 1, backoffMaxMs: 5,
      collect: async () => report(), onRefused: (code) => refused.push(code),
    });
    open.push(reporter);
    reporter.start();
    let rejections = 0;
    for await (const _ of on(events, 'rejected')) if (++rejections === 4) break;
    await expect.poll(() => refused.length).toBeGreaterThanOrEqual(4);
    expect(reporter.refusal).toMatchObject({ code: 'UNAUTHENTICATED', details: 'unknown node or wrong join token' });
    expect(new Set(refused)).toEqual(new Set(['unauthenticated']));
    const errors = lines.filter((l) => l.level === 50);
    expect(errors.map((l) => [l.msg, l.code])).toEqual([['the scheduler refused this agent; retrying with backoff', 'UNAUTHENTICATED']]);
    expect(lines.filter((l) => l.msg === 'the scheduler refused this agent again').length).toBeGreaterThanOrEqual(2);

    accept = true; // the operator fixed the token
    await once(events, 'report');
    expect(reporter.connected).toBe(true);
    expect(reporter.refusal).toBeUndefined();
  });
});
