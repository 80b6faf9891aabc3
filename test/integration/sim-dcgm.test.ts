import { on } from 'node:events';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.js';
import { startAgent } from '../../gpu-agent/agent.js';
import { dcgmGpuSamples } from '../../gpu-agent/probes/dcgm.js';
import { parsePromText } from '../../gpu-agent/probes/prom-text.js';
import { MIB } from '../../gpu-agent/probes/types.js';
import { AgentService, type AgentView } from '../../scheduler/agents/agent-service.js';
import { DEFAULT_SIM_OPTIONS, parseSimArgs } from '../../sim/sim-options.js';
import type { SimOptions } from '../../sim/sim-options.js';
import { startSim } from '../../sim/sim-server.js';
import type { SimServer } from '../../sim/sim-server.js';

const GIB = 1024 * MIB;
const open: Array<{ stop(): unknown }> = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.stop();
});

async function sim(overrides: Partial<SimOptions> = {}): Promise<SimServer> {
  // Slow decode: a sequence with a large max_tokens stays running for the whole test.
  const s = await startSim({ ...DEFAULT_SIM_OPTIONS, port: 0, ttftMs: 0, tokensPerSecond: 20, maxSeqs: 4, ...overrides });
  open.push({ stop: () => s.close() });
  return s;
}

async function page(s: SimServer): Promise<string> {
  const res = await fetch(`${s.url}/dcgm/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return res.text();
}

const gpusOf = async (s: SimServer) => dcgmGpuSamples(parsePromText(await page(s)));

/** Starts a long streaming chat; resolves once the sim has admitted it (headers follow submission). */
async function longStream(s: SimServer): Promise<AbortController> {
  const abort = new AbortController();
  const res = await fetch(`${s.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'hello there, a long prompt' }], max_tokens: 4000, ignore_eos: true, stream: true }),
    signal: abort.signal,
  });
  expect(res.status).toBe(200); // the body stays unread: cancelling it would close the stream
  open.push({ stop: () => abort.abort() });
  return abort;
}

describe('the sim as a DCGM exporter (/dcgm/metrics)', () => {
  it('reads as one idle H100 by default, and utilisation, memory, heat and power rise with the batch', async () => {
    const s = await sim();
    const [idle, ...more] = await gpusOf(s);
    expect(more).toEqual([]);
    expect(idle).toMatchObject({ index: 0, name: 'NVIDIA H100 80GB HBM3', utilization: 0, memoryTotalBytes: 80 * GIB });
    expect(idle?.uuid).toMatch(/^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(idle?.memoryUsedBytes).toBeGreaterThan(0); // the weights

    const streams = [await longStream(s), await longStream(s)];
    expect(s.stats().running).toBe(2);
    const [half] = await gpusOf(s);
    expect(half?.utilization).toBe(0.5);
    expect(half?.memoryUsedBytes).toBeGreaterThan(idle?.memoryUsedBytes ?? Infinity);
    expect(half?.temperatureC).toBeGreaterThan(idle?.temperatureC ?? Infinity);
    expect(half?.powerWatts).toBeGreaterThan(idle?.powerWatts ?? Infinity);
    expect(half?.uuid).toBe(idle?.uuid);

    streams.push(await longStream(s), await longStream(s));
    const [full] = await gpusOf(s);
    expect(full?.utilization).toBe(1);
    expect(full?.powerWatts).toBeGreaterThan(half?.powerWatts ?? Infinity);
    expect(full?.memoryUsedBytes).toBeLessThanOrEqual(full?.memoryTotalBytes ?? 0);

    for (const a of streams) a.abort();
    await expect.poll(async () => (await gpusOf(s))[0]?.utilization).toBe(0);
  });

  it('--gpus, --gpu-memory-gib and --gpu-name shape the page; names and labels are dcgm-exporter\'s', async () => {
    const flags = parseSimArgs(['--port', '0', '--gpus', '2', '--gpu-memory-gib', '40', '--gpu-name', 'NVIDIA A100-SXM4-40GB']);
    const s = await sim({ gpus: flags.gpus });
    const text = await page(s);
    const gpus = dcgmGpuSamples(parsePromText(text));
    expect(gpus.map((g) => [g.index, g.name, g.memoryTotalBytes])).toEqual([
      [0, 'NVIDIA A100-SXM4-40GB', 40 * GIB],
      [1, 'NVIDIA A100-SXM4-40GB', 40 * GIB],
    ]);
    expect(new Set(gpus.map((g) => g.uuid)).size).toBe(2);

    // Every series is one dcgm-exporter writes, with its label names in its order.
    const fixture = parsePromText(readFileSync('test/fixtures/probes/dcgm.prom', 'utf8'));
    const realNames = new Set(fixture.map((x) => x.name));
    const realLabels = Object.keys(fixture[0]?.labels ?? {}).filter((k) => k !== 'DCGM_FI_DRIVER_VERSION');
    for (const sample of parsePromText(text)) {
      expect(realNames).toContain(sample.name);
      expect(Object.keys(sample.labels)).toEqual(realLabels);
    }
  });

  it('a switchyard agent pointed at the page reports the simulated GPU to the scheduler', async () => {
    const s = await sim();
    const log = createLogger({ name: 'test', level: 'silent' });
    const events = new EventEmitter();
    const scheduler = new AgentService({
      auth: { verify: async () => true },
      log,
      reportIntervalMs: 100,
      onReport: (v: AgentView) => events.emit('report', v),
    });
    const port = await scheduler.start('127.0.0.1', 0);
    open.push(scheduler);
    const agent = await startAgent({
      schedulerTarget: `127.0.0.1:${port}`, nodeId: 'sim-node', joinToken: 't', engineUrl: s.url, host: '127.0.0.1',
      metricsPort: 0, log, version: 'test', dcgmUrl: `${s.url}/dcgm/metrics`,
    });
    open.push(agent);
    await longStream(s);
    for await (const [view] of on(events, 'report') as AsyncIterable<[AgentView]>) {
      const gpu = view.lastReport?.gpus[0];
      if (gpu?.utilization === undefined || gpu.utilization === 0) continue;
      expect(gpu).toMatchObject({ index: 0, name: 'NVIDIA H100 80GB HBM3', utilization: 0.25, memory_total_bytes: 80 * GIB });
      expect(view.lastReport?.engine.running_requests).toBe(1);
      break;
    }
    const metrics = await (await fetch(`${agent.metricsUrl}/metrics`)).text();
    expect(metrics).toMatch(/switchyard_agent_gpu_utilization_ratio\{gpu="0",uuid="GPU-[^"]+",name="NVIDIA H100 80GB HBM3"\} 0\.25/);
  });
});
