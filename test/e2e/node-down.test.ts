import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { regionsYaml, startGatewayProcess, type RunningProcess } from '../helpers/processes.js';

/**
 * A node that dies with a stream open: the engine stops answering (health probes fail) but the
 * stream's socket stays open and silent, as a real llama.cpp server did when it stopped
 * listening. The gateway's probe declares the node down and ends the stream at once, long before
 * the idle timeout (30 s here).
 */
let healthy = true;
const openStreams = new Set<ServerResponse>();
const engine = createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(healthy ? 200 : 503).end();
    return;
  }
  req.resume();
  req.once('end', () => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const chunk = { id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: 'tok ' }, finish_reason: null }] };
    for (let i = 0; i < 3; i++) res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    openStreams.add(res); // then silence: the socket stays open
  });
});
let gw: RunningProcess | undefined;

afterAll(async () => {
  await gw?.stop();
  for (const res of openStreams) res.destroy();
  engine.close();
});

describe('a node declared down mid-stream', () => {
  it('ends the streams open to it with an error event within about one health interval, and counts them', async () => {
    engine.listen(0, '127.0.0.1');
    await once(engine, 'listening');
    const port = (engine.address() as { port: number }).port;
    gw = await startGatewayProcess(regionsYaml([{ id: 'r', nodes: [{ id: 'dying', url: `http://127.0.0.1:${port}`, models: ['m'] }] }]), [], {
      SWITCHYARD_HEALTH_INTERVAL_MS: '200',
      SWITCHYARD_HEALTH_FAILURES: '2',
      SWITCHYARD_IDLE_TIMEOUT_MS: '30000',
    });
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true });
    let text = '';
    const failure = (async () => {
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? '';
        if (text === 'tok tok tok ') healthy = false; // the engine dies after three tokens
      }
    })().then(
      () => undefined,
      (err: unknown) => err,
    );
    const err = await failure;
    expect(text).toBe('tok tok tok ');
    expect(err).toBeInstanceOf(OpenAI.APIError);
    // The node-down event, not the idle timeout's "stopped sending tokens" (30 s here).
    expect((err as Error).message).toContain('declared down');
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/switchyard_streams_ended_node_down_total\{reason="health_probe"\} 1/);
    expect(gw.output.some((l) => l.includes('its open streams were ended'))).toBe(true);
  });
});
