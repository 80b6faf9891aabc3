import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, regionsYaml, simStats, startGatewayProcess, startSimProcess, type RunningProcess } from '../helpers/processes.js';
import { dropSchema, PG_URL, query, uniqueName } from '../helpers/services.js';

/**
 * Mid-stream failover with real processes: the preferred node drops every stream after three
 * tokens (`--drop-rate 1`); the gateway continues each one on the other node, which is told to
 * continue the text so far (the simulator, like vLLM, honours continue_final_message). The
 * client, the official SDK, sees one uninterrupted stream.
 */
const started: RunningProcess[] = [];
const schema = uniqueName('sy_failover');
let gw: RunningProcess;
let dropping: RunningProcess;
let healthy: RunningProcess;
const words = Array.from({ length: 20 }, (_, i) => `w${i}`);

beforeAll(async () => {
  [dropping, healthy] = await Promise.all([
    startSimProcess(['--drop-rate', '1', '--tokens-per-second', '2000', '--ttft-ms', '1']),
    startSimProcess(['--tokens-per-second', '2000', '--ttft-ms', '1']),
  ]);
  started.push(dropping, healthy);
  // The dropping node is declared much faster, so placement sends every first leg to it.
  gw = await startGatewayProcess(
    regionsYaml([{ id: 'r', nodes: [{ id: 'flaky', url: dropping.url, tokensPerSecond: 100_000 }, { id: 'steady', url: healthy.url, tokensPerSecond: 100 }] }]),
    [],
    { SWITCHYARD_BREAKER_FAILURES: '1000', DATABASE_URL: PG_URL, SWITCHYARD_DATABASE_SCHEMA: schema, SWITCHYARD_USAGE_FLUSH_INTERVAL_MS: '100' },
  );
  started.push(gw);
}, 60_000);

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await dropSchema(schema);
});

const client = () => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });

describe('a node that fails mid-stream', () => {
  it('chat: the stream goes on on another node — one id, no text lost or repeated, usage summed', async () => {
    const id = uniqueName('failover');
    const stream = await client().chat.completions.create(
      { model: 'sim-small', stream: true, stream_options: { include_usage: true }, max_tokens: 50, messages: [{ role: 'user', content: `echo: ${words.join(' ')}` }] },
      { headers: { 'x-request-id': id } },
    );
    let text = '';
    const ids = new Set<string>();
    const models = new Set<string>();
    let usage: OpenAI.CompletionUsage | undefined;
    let roles = 0;
    for await (const chunk of stream) {
      ids.add(chunk.id);
      models.add(chunk.model);
      if (chunk.choices[0]?.delta.role !== undefined) roles++;
      text += chunk.choices[0]?.delta.content ?? '';
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe(words.join(' '));
    expect(ids.size).toBe(1);
    expect(models.size).toBe(1);
    expect(roles).toBe(1);
    expect(usage?.completion_tokens).toBe(words.length);
    // Both nodes served a leg.
    expect((await simStats(healthy.url)).received).toBeGreaterThanOrEqual(1);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/switchyard_stream_failovers_total\{reason="\w+",result="continued"\} [1-9]/);
    // The usage record says so: one record, the node that finished it, one failover.
    await eventually(async () => (await query(`SELECT 1 FROM "${schema}".usage_records WHERE request_id = $1`, [id])).length === 1, 10_000, 'the usage record');
    const [record] = await query<{ failovers: number; node_id: string; completion_tokens: number }>(`SELECT failovers, node_id, completion_tokens FROM "${schema}".usage_records WHERE request_id = $1`, [id]);
    expect(record).toEqual({ failovers: 1, node_id: 'steady', completion_tokens: words.length });
  });

  it('the Responses API: a streamed response goes on on another node, one answer, usage summed', async () => {
    const stream = await client().responses.create({ model: 'sim-small', stream: true, input: `echo: ${words.join(' ')}`, max_output_tokens: 50 });
    let text = '';
    let final: { id: string; usage?: { output_tokens?: number } | null } | undefined;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') final = event.response;
    }
    expect(text).toBe(words.join(' '));
    expect(final?.usage?.output_tokens).toBe(words.length);
    expect((await client().responses.retrieve(final?.id ?? '')).output_text).toBe(words.join(' '));
  });

  it('x-switchyard-failover: off ends the stream with the error event, as before', async () => {
    const stream = await client().chat.completions.create(
      { model: 'sim-small', stream: true, max_tokens: 50, messages: [{ role: 'user', content: `echo: ${words.join(' ')}` }] },
      { headers: { 'x-switchyard-failover': 'off' } },
    );
    let text = '';
    const failed = await (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    })().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failed).toBeInstanceOf(OpenAI.APIError);
    expect(text.split(' ').length).toBeLessThan(words.length);
  });
});
