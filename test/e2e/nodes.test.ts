import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.js';
import { AgentReporter } from '../../gpu-agent/reporter.js';
import type { SchedulerCommand } from '../../proto/agent-protocol.js';
import { CLI, regionsYaml, startCli, startGatewayProcess, startSimProcess, type RunningProcess } from '../helpers/processes.js';
import { dropSchema, PG_URL, REDIS_URL, uniqueName } from '../helpers/services.js';
import OpenAI from 'openai';

/** Node registry through the CLI and admin API; the scheduler checks join tokens and relays drains. */
const schema = uniqueName('sy_nodes');
const ADMIN = uniqueName('admin');
// Gateway and scheduler share Redis: that is how agents' reports reach the gateway.
const env = {
  DATABASE_URL: PG_URL, SWITCHYARD_DATABASE_SCHEMA: schema, SWITCHYARD_ADMIN_TOKEN: ADMIN,
  REDIS_URL, SWITCHYARD_REDIS_PREFIX: `${schema}:`, SWITCHYARD_REPORT_INTERVAL_MS: '200',
};
const started: RunningProcess[] = [];
const reporters: AgentReporter[] = [];
let gw: RunningProcess;
let scheduler: RunningProcess;
let slowSim: RunningProcess;
let fakeGpuBin: string;
const log = createLogger({ name: 'test', level: 'silent' });

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [CLI, 'nodes', ...args, '--url-admin', gw.url], { encoding: 'utf8', env: { ...process.env, SWITCHYARD_ADMIN_TOKEN: ADMIN } });
}

beforeAll(async () => {
  // A fake nvidia-smi on PATH: two GPUs, the second with MIG-style [N/A] readings.
  fakeGpuBin = mkdtempSync(join(tmpdir(), 'switchyard-fake-gpu-'));
  writeFileSync(
    join(fakeGpuBin, 'nvidia-smi'),
    '#!/bin/sh\ncat <<EOF\n0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559, 1024, 37, 45, 120.5\n1, GPU-bbbb, NVIDIA H100 80GB HBM3, 81559, 2048, [N/A], 44, [Not Supported]\nEOF\n',
  );
  chmodSync(join(fakeGpuBin, 'nvidia-smi'), 0o755);
  const sim = await startSimProcess();
  started.push(sim);
  slowSim = await startSimProcess(['--models', 'live-model', '--tokens-per-second', '40', '--ttft-ms', '1']);
  started.push(slowSim);
  gw = await startGatewayProcess(regionsYaml([{ id: 'eu', nodes: [{ id: 'static-1', url: sim.url }] }]), [], env);
  started.push(gw);
  scheduler = await startCli(['scheduler', '--scheduler-port', '0', '--port', '0'], 'scheduler listening', env);
  started.push(scheduler);
});

afterAll(async () => {
  for (const r of reporters) r.stop();
  await Promise.all(started.map((p) => p.stop()));
  await dropSchema(schema);
});

function agent(nodeId: string, token: string): { reporter: AgentReporter; commands: SchedulerCommand[] } {
  const commands: SchedulerCommand[] = [];
  const reporter = new AgentReporter({
    target: scheduler.url,
    hello: { node_id: nodeId, join_token: token, engine_kind: 'vllm', engine_version: 'x', models: ['m'], agent_version: 'test' },
    collect: async () => ({ timestamp_ms: Date.now(), gpus: [], engine: { running_requests: 0, waiting_requests: 0 } }),
    log,
    backoffBaseMs: 50,
    backoffMaxMs: 200,
    onCommand: (c) => commands.push(c),
  });
  reporters.push(reporter);
  reporter.start();
  return { reporter, commands };
}

const kinds = (cs: SchedulerCommand[]): string[] => cs.map((c) => (['welcome', 'drain', 'resume', 'set_report_interval'] as const).find((k) => c[k] != null) ?? '?');

let firstToken = '';

describe('node registry and agents', () => {
  it('register with the CLI; the agent joins with its token; drain and resume reach it', async () => {
    const reg = cli('register', '--id', 'gpu-7', '--region', 'eu', '--cluster', 'eu-a', '--url', 'http://127.0.0.1:9', '--engine', 'vllm',
      '--models', 'm', '--tokens-per-second', '2400', '--max-sequences', '64', '--json');
    expect(reg.stderr).toBe('');
    const node = JSON.parse(reg.stdout) as { id: string; join_token: string };
    expect(node.join_token).toMatch(/^sy-join-/);
    firstToken = node.join_token;

    const bad = agent('gpu-7', 'sy-join-wrong');
    await expect.poll(() => bad.reporter.lastError?.code, { timeout: 5000 }).toBe(16); // UNAUTHENTICATED
    bad.reporter.stop();

    const good = agent('gpu-7', node.join_token);
    await expect.poll(() => good.reporter.connected, { timeout: 5000 }).toBe(true);
    expect(cli('drain', 'gpu-7').stdout).toContain('draining');
    await expect.poll(() => kinds(good.commands), { timeout: 5000 }).toEqual(['welcome', 'drain']);
    expect(cli('resume', 'gpu-7').stdout).toContain('active');
    await expect.poll(() => kinds(good.commands), { timeout: 5000 }).toEqual(['welcome', 'drain', 'resume']);
  });

  it('lists static nodes read-only beside registered ones; removal revokes the token', async () => {
    const list = JSON.parse(cli('list', '--json').stdout) as Array<{ id: string; source: string; live: unknown }>;
    expect(list.map((n) => `${n.id}:${n.source}`)).toEqual(['static-1:static', 'gpu-7:registered']);
    expect(list[0]?.live).toMatchObject({ healthy: true });
    const drainStatic = cli('drain', 'static-1');
    expect(drainStatic.status).toBe(1);
    expect(drainStatic.stderr).toContain('409');
    const unknownRegion = cli('register', '--id', 'gpu-8', '--region', 'mars', '--cluster', 'c', '--url', 'http://x:1', '--engine', 'vllm', '--models', 'm', '--tokens-per-second', '1', '--max-sequences', '1');
    expect(unknownRegion.stderr).toContain("Unknown region 'mars'");

    const reg = JSON.parse(cli('register', '--id', 'gpu-9', '--region', 'eu', '--cluster', 'c', '--url', 'http://x:1', '--engine', 'sglang', '--models', 'm', '--tokens-per-second', '1', '--max-sequences', '1', '--json').stdout) as { join_token: string };
    expect(cli('remove', 'gpu-9').status).toBe(0);
    const gone = agent('gpu-9', reg.join_token);
    await expect.poll(() => gone.reporter.lastError?.code, { timeout: 5000 }).toBe(16);
  });

  it('registering an id again is idempotent: the spec is updated, the join token kept unless rotated', async () => {
    const register = (...extra: string[]) => cli('register', '--id', 'gpu-7', '--region', 'eu', '--cluster', 'eu-a', '--url', 'http://127.0.0.1:9', '--engine', 'vllm',
      '--models', 'm', '--tokens-per-second', '3000', '--max-sequences', '64', ...extra);
    const again = register('--json');
    expect(again.status).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ id: 'gpu-7', created: false, join_token: null, capacity: { tokensPerSecond: 3000 } });
    expect(register().stdout).toContain('join token is unchanged');
    // The token handed out first still admits the node's agent.
    const kept = agent('gpu-7', firstToken);
    await expect.poll(() => kept.reporter.connected, { timeout: 5000 }).toBe(true);
    kept.reporter.stop();

    const rotated = JSON.parse(register('--rotate-token', '--json').stdout) as { created: boolean; join_token: string };
    expect(rotated.created).toBe(false);
    expect(rotated.join_token).toMatch(/^sy-join-/);
    expect(rotated.join_token).not.toBe(firstToken);
    const old = agent('gpu-7', firstToken);
    await expect.poll(() => old.reporter.lastError?.code, { timeout: 5000 }).toBe(16); // UNAUTHENTICATED
    old.reporter.stop();
    const renewed = agent('gpu-7', rotated.join_token);
    await expect.poll(() => renewed.reporter.connected, { timeout: 5000 }).toBe(true);
    renewed.reporter.stop();
  });

  it('switchyard agent beside a sim (fake nvidia-smi on PATH): traffic while it reports; drain keeps open streams; a killed agent makes the node stale', async () => {
    const reg = JSON.parse(cli('register', '--id', 'gpu-live', '--region', 'eu', '--cluster', 'eu-a', '--url', slowSim.url, '--engine', 'vllm',
      '--models', 'live-model', '--tokens-per-second', '40', '--max-sequences', '8', '--json').stdout) as { join_token: string };
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const ask = () => client.chat.completions.create({ model: 'live-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }).withResponse();
    const served = async (): Promise<string | number> => {
      try {
        return (await ask()).response.headers.get('x-switchyard-node') ?? 'none';
      } catch (err) {
        return (err as InstanceType<typeof OpenAI.APIError>).status ?? 0;
      }
    };
    // Registered, but no agent yet: no fresh reports, no traffic.
    await expect.poll(served, { timeout: 5000 }).toBe(503);
    const runAgent = async (): Promise<RunningProcess> => {
      const proc = await startCli(['agent', '--scheduler', scheduler.url, '--node-id', 'gpu-live', '--join-token', reg.join_token, '--engine-url', slowSim.url, '--metrics-port', '0'],
        'agent running', { PATH: `${fakeGpuBin}:${process.env['PATH'] ?? ''}` });
      started.push(proc); // stopped in afterAll even when an assertion fails first
      return proc;
    };
    let agentProc = await runAgent();
    await expect.poll(served, { timeout: 5000 }).toBe('gpu-live');

    // The agent's own /metrics: GPUs from nvidia-smi ([N/A] stays absent), engine load from the sim's vLLM metrics.
    const metrics = await (await fetch(`${agentProc.url}/metrics`)).text();
    expect(metrics).toMatch(/switchyard_agent_gpu_utilization_ratio\{gpu="0",uuid="GPU-aaaa",name="NVIDIA H100 80GB HBM3"\} 0.37/);
    expect(metrics).not.toMatch(/switchyard_agent_gpu_utilization_ratio\{gpu="1"/);
    expect(metrics).toMatch(/switchyard_agent_gpu_memory_total_bytes\{gpu="1",[^}]*\} 85520809984/);
    expect(metrics).toMatch(/switchyard_agent_connected 1/);
    expect(metrics).not.toMatch(/vllm:/);

    // An open stream survives the drain; new requests are refused.
    const stream = await client.chat.completions.create({ model: 'live-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 40, stream: true });
    expect(cli('drain', 'gpu-live').status).toBe(0);
    await expect.poll(served, { timeout: 5000 }).toBe(503);
    let tokens = 0;
    for await (const chunk of stream) if (chunk.choices[0]?.delta.content) tokens++;
    expect(tokens).toBeGreaterThan(1);
    await expect.poll(async () => (await (await fetch(`${agentProc.url}/metrics`)).text()).includes('switchyard_agent_draining 1'), { timeout: 5000 }).toBe(true);
    expect(cli('resume', 'gpu-live').status).toBe(0);
    await expect.poll(served, { timeout: 5000 }).toBe('gpu-live');

    // The agent is killed: within three report intervals the node is stale and gets nothing.
    await agentProc.stop();
    await expect.poll(served, { timeout: 5000 }).toBe(503);
    agentProc = await runAgent();
    await expect.poll(served, { timeout: 5000 }).toBe('gpu-live');
  });
});
