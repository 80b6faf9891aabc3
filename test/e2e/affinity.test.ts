import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { regionsYaml, startGatewayProcess, startSimProcess, type RunningProcess } from '../helpers/processes.js';

/**
 * Session and prefix-cache affinity through a real gateway over two equal sim nodes: requests
 * that share a key (x-session-id, OpenAI's prompt_cache_key, or user) go to one node, so its
 * prefix cache serves them; different keys spread over the nodes (rendezvous hashing: sixteen
 * keys all on one of two equal nodes has probability 2^-15).
 */
const started: RunningProcess[] = [];
let gw: RunningProcess;
let client: OpenAI;

beforeAll(async () => {
  const [a, b] = await Promise.all([startSimProcess(['--ttft-ms', '1']), startSimProcess(['--ttft-ms', '1'])]);
  started.push(a, b);
  gw = await startGatewayProcess(regionsYaml([{ id: 'r', nodes: [{ id: 'a', url: a.url }, { id: 'b', url: b.url }] }]));
  started.push(gw);
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 30_000);

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
});

type Send = (key: string, turn: number) => Promise<string>;

/** Sixteen keys, three requests each in turn: the nodes that served each key. */
async function nodesByKey(send: Send): Promise<string[][]> {
  return Promise.all(
    Array.from({ length: 16 }, async (_, k) => {
      const key = `key-${k}-${Math.random().toString(36).slice(2, 10)}`;
      const nodes: string[] = [];
      for (let turn = 0; turn < 3; turn++) nodes.push(await send(key, turn));
      return nodes;
    }),
  );
}

function expectAffinity(byKey: string[][]): void {
  const why = (): string => `${JSON.stringify(byKey)}\n${gw.output.filter((line) => /"msg":"node /.test(line)).join('\n')}`;
  for (const nodes of byKey) expect(new Set(nodes).size, why()).toBe(1);
  expect(new Set(byKey.map((n) => n[0])).size, why()).toBe(2);
}

const chat = (extra: Record<string, unknown>, headers: Record<string, string> = {}) =>
  client.chat.completions
    .create({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra }, { headers })
    .withResponse()
    .then(({ response }) => response.headers.get('x-switchyard-node') ?? '');

describe('affinity', () => {
  it('chat completions: the same x-session-id, prompt_cache_key or user goes to the same node', async () => {
    expectAffinity(await nodesByKey((key) => chat({}, { 'x-session-id': key })));
    expectAffinity(await nodesByKey((key) => chat({ prompt_cache_key: key })));
    expectAffinity(await nodesByKey((key) => chat({ user: key })));
  });

  it('responses: a prompt_cache_key shared by separate conversations places them together, and is echoed', async () => {
    const respond = async (key: string): Promise<string> => {
      const { data, response } = await client.responses.create({ model: 'sim-small', input: 'hi', max_output_tokens: 2, prompt_cache_key: key }).withResponse();
      expect(data.prompt_cache_key).toBe(key);
      return response.headers.get('x-switchyard-node') ?? '';
    };
    // Each call is a new conversation: only the shared key can keep them on one node.
    expectAffinity(await nodesByKey((key) => respond(key)));
  });

  it('responses: a follow-up turn without a key keeps the key of the turn it continues', async () => {
    const first = await client.responses.create({ model: 'sim-small', input: 'hi', max_output_tokens: 2, prompt_cache_key: 'shared-prefix' });
    const next = await client.responses.create({ model: 'sim-small', input: 'more', max_output_tokens: 2, previous_response_id: first.id });
    expect(next.prompt_cache_key).toBe('shared-prefix');
  });
});
