import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  regionsYaml,
  startGatewayProcess,
  startSimProcess,
  type RunningProcess,
} from '../helpers/processes.js';

/**
 * The gateway and real `switchyard sim` processes, driven by the official openai SDK.
 * Fleet: eu-west (local) has a fast and a slow node, eu-north is 30 ms away, us-east is another
 * residency group.
 */
const started: RunningProcess[] = [];
let west: RunningProcess;
let westSlow: RunningProcess;
let north: RunningProcess;
let us: RunningProcess;
let gateway: RunningProcess;
let client: OpenAI;

const FAST = ['--tokens-per-second', '20000', '--ttft-ms', '2', '--max-seqs', '64'];

async function track<T extends RunningProcess>(p: Promise<T>): Promise<T> {
  const proc = await p;
  started.push(proc);
  return proc;
}

function fleetYaml(westUrl: string, westSlowUrl: string, northUrl: string, usUrl: string): string {
  return regionsYaml(
    [
      { id: 'eu-west', nodes: [{ id: 'west-fast', url: westUrl, tokensPerSecond: 4000, models: ['sim-small', 'sim-embed'] }, { id: 'west-slow', url: westSlowUrl, tokensPerSecond: 500 }] },
      { id: 'eu-north', nodes: [{ id: 'north-1', url: northUrl, tokensPerSecond: 4000, models: ['sim-small', 'sim-embed'] }] },
      { id: 'us-east', residency: 'us', nodes: [{ id: 'us-1', url: usUrl, tokensPerSecond: 9000, models: ['sim-small', 'us-only'] }] },
    ],
    [['eu-west', 'eu-north', 30], ['eu-west', 'us-east', 5]],
  );
}

beforeAll(async () => {
  [west, westSlow, north, us] = await Promise.all([
    track(startSimProcess([...FAST, '--models', 'sim-small,sim-embed', '--seed', '7'])),
    track(startSimProcess([...FAST, '--seed', '7'])),
    track(startSimProcess([...FAST, '--models', 'sim-small,sim-embed', '--seed', '7'])),
    track(startSimProcess([...FAST, '--models', 'sim-small,us-only', '--seed', '7'])),
  ]);
  gateway = await track(startGatewayProcess(fleetYaml(west.url, westSlow.url, north.url, us.url), ['--region', 'eu-west']));
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
});

const messages = [{ role: 'user' as const, content: 'Tell me about token buckets.' }];

describe('OpenAI API through the gateway', () => {
  it('chat: the text is the sim’s own output', async () => {
    const direct = new OpenAI({ baseURL: `${west.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const want = await direct.chat.completions.create({ model: 'sim-small', messages, max_tokens: 20 });
    const { data, response } = await client.chat.completions.create({ model: 'sim-small', messages, max_tokens: 20 }).withResponse();
    expect(data.choices[0]?.message.content).toBe(want.choices[0]?.message.content);
    expect(data.choices[0]?.message.content?.length).toBeGreaterThan(10);
    expect(data.usage).toMatchObject({ prompt_tokens: expect.any(Number), completion_tokens: 20 });
    expect(response.headers.get('x-switchyard-node')).toBe('west-fast');
    expect(response.headers.get('x-request-id')).toMatch(/^req_/);
  });

  it('streaming: reassembled text equals the plain answer; no usage chunk unless asked', async () => {
    const plain = await client.chat.completions.create({ model: 'sim-small', messages, max_tokens: 30 });
    const stream = await client.chat.completions.create({ model: 'sim-small', messages, max_tokens: 30, stream: true });
    let text = '';
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      expect(chunk.choices.length).toBeGreaterThan(0); // the usage-only trailer was stripped
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text).toBe(plain.choices[0]?.message.content);
    expect(chunks).toBeGreaterThanOrEqual(30);
  });

  it('streaming with include_usage: the usage chunk arrives', async () => {
    const stream = await client.chat.completions.create({
      model: 'sim-small', messages, max_tokens: 12, stream: true, stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    expect(usage?.completion_tokens).toBe(12);
  });

  it('completions and embeddings', async () => {
    const c = await client.completions.create({ model: 'sim-small', prompt: 'Once upon a time', max_tokens: 8 });
    expect(c.choices[0]?.text.length).toBeGreaterThan(0);
    expect(c.usage?.completion_tokens).toBe(8);
    const e = await client.embeddings.create({ model: 'sim-embed', input: ['a', 'b'] });
    expect(e.data).toHaveLength(2);
    expect(e.data[0]?.embedding.length).toBeGreaterThan(0);
  });

  it('models list: the models of healthy nodes within the residency group', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids.sort()).toEqual(['sim-embed', 'sim-small']);
  });

  it('unknown model → NotFoundError; a model of another residency group is unknown here', async () => {
    await expect(client.chat.completions.create({ model: 'gpt-9', messages })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const err = await client.chat.completions.create({ model: 'us-only', messages }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
  });

  it('malformed body → BadRequestError naming the field', async () => {
    const err = await client.chat.completions
      .create({ model: 'sim-small' } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('messages');
    const res = await fetch(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_json' } });
    expect(res.headers.get('x-request-id')).toBeTruthy();
  });

  it('fields the gateway does not use pass through (the engine still validates them)', async () => {
    const r = await client.chat.completions.create({
      model: 'sim-small', messages, max_tokens: 5, seed: 3, logprobs: false, response_format: { type: 'text' },
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
    });
    expect(r.choices[0]?.finish_reason).toBe('length');
  });

  it('keeps the client’s x-request-id', async () => {
    const res = await fetch(`${gateway.url}/v1/models`, { headers: { 'x-request-id': 'my-trace-42' } });
    expect(res.headers.get('x-request-id')).toBe('my-trace-42');
  });

  it('x-switchyard-region asks for a region within residency, refuses one outside', async () => {
    const { response } = await client.chat.completions
      .create({ model: 'sim-small', messages, max_tokens: 2 }, { headers: { 'x-switchyard-region': 'eu-north' } })
      .withResponse();
    expect(response.headers.get('x-switchyard-node')).toBe('north-1');
    const err = await client.chat.completions
      .create({ model: 'sim-small', messages, max_tokens: 2 }, { headers: { 'x-switchyard-region': 'us-east' } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
  });

  it('/metrics counts requests, tokens and node health', async () => {
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(text).toMatch(/switchyard_http_requests_total\{route="\/v1\/chat\/completions",status_class="2xx"\} \d+/);
    expect(text).toMatch(/switchyard_tokens_total\{model="sim-small",region="eu-west",direction="completion"\} \d+/);
    expect(text).toMatch(/switchyard_model_requests_total\{model="sim-small",region="eu-west",status_class="2xx"\} [1-9]/);
    expect(text).toMatch(/switchyard_node_generated_tokens_total\{node="west-[a-z]+",region="eu-west"\} [1-9]/);
    expect(text).toMatch(/switchyard_gateway_overhead_seconds_count\{route="\/v1\/chat\/completions"\} [1-9]/);
    expect(text).toMatch(/switchyard_time_per_output_token_seconds_count\{model="sim-small",region="eu-west"\} [1-9]/);
    expect(text).toMatch(/switchyard_node_headroom_sequences\{node="west-fast",region="eu-west"\} \d+/);
    // The request for a model nobody serves (gpt-9, above) did not become a new series.
    expect(text).not.toContain('model="gpt-9"');
    expect(text).toMatch(/switchyard_node_healthy\{node="west-fast",region="eu-west"\} 1/);
    expect(text).toMatch(/switchyard_time_to_first_token_seconds_count\{model="sim-small",region="eu-west"\} \d+/);
  });

  it('/healthz and /readyz', async () => {
    expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${gateway.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', region: 'eu-west' });
  });

  it('unknown routes answer 404 in OpenAI’s shape', async () => {
    const res = await fetch(`${gateway.url}/v1/nope`, { method: 'POST' });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
  });
});
