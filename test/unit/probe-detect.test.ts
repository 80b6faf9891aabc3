import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { detectEngine, type FetchText } from '../../gpu-agent/probes/detect.js';

const text = (name: string): string => readFileSync(`test/fixtures/probes/${name}`, 'utf8');

/** A fake server: path -> [status, body]; any other path refuses the connection. */
function fakeServer(routes: Record<string, [number, string]>): { fetchText: FetchText; asked: string[] } {
  const asked: string[] = [];
  const fetchText: FetchText = async (url) => {
    asked.push(url);
    const route = routes[new URL(url).pathname];
    if (!route) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    return { status: route[0], body: route[1] };
  };
  return { fetchText, asked };
}

describe('detectEngine', () => {
  it.each([
    ['vllm.prom', 'vllm'],
    ['sglang.prom', 'sglang'],
    ['llamacpp.prom', 'llamacpp'],
    ['tgi.prom', 'tgi'],
  ])('%s on /metrics is %s, with its first sample', async (file, engine) => {
    const { fetchText, asked } = fakeServer({ '/metrics': [200, text(file)] });
    const found = await detectEngine('http://127.0.0.1:8000/', fetchText);
    expect(found?.engine).toBe(engine);
    expect(found?.sample.engine).toBe(engine);
    expect(asked).toEqual(['http://127.0.0.1:8000/metrics']);
  });

  it('is not fooled by a /metrics page without engine metrics (a proxy, another exporter)', async () => {
    const { fetchText, asked } = fakeServer({ '/metrics': [200, text('dcgm.prom')], '/api/ps': [200, text('ollama-ps.json')] });
    const found = await detectEngine('http://h:11434', fetchText);
    expect(found?.engine).toBe('ollama');
    expect(asked).toEqual(['http://h:11434/metrics', 'http://h:11434/api/ps']);
  });

  it('finds Ollama on /api/ps when /metrics is 404', async () => {
    const { fetchText } = fakeServer({ '/metrics': [404, '404 page not found'], '/api/ps': [200, text('ollama-ps-idle.json')] });
    const found = await detectEngine('http://h:11434', fetchText);
    expect(found).toMatchObject({ engine: 'ollama', sample: { running: null, loadedModels: [] } });
  });

  it('finds llama-server without --metrics through /slots', async () => {
    const { fetchText } = fakeServer({
      '/metrics': [501, '{"error":{"code":501,"message":"This server does not support metrics endpoint."}}'],
      '/api/ps': [404, '{"error":{"code":404,"message":"File Not Found"}}'],
      '/slots': [200, text('llamacpp-slots.json')],
    });
    expect(await detectEngine('http://h:8080', fetchText)).toMatchObject({
      engine: 'llamacpp',
      sample: { running: 0, waiting: null },
    });
  });

  it('is undefined when nothing answers like an engine, and never throws on refused or bad bodies', async () => {
    expect(await detectEngine('http://h:1', fakeServer({}).fetchText)).toBeUndefined();
    const junk = fakeServer({ '/metrics': [200, '<html>'], '/api/ps': [200, 'not json'], '/slots': [200, '{}'] });
    expect(await detectEngine('http://h:1', junk.fetchText)).toBeUndefined();
  });
});
