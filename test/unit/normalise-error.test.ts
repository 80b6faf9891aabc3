import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { toOpenAIErrorBody } from '../../core/errors.js';
import type { EngineKind } from '../../core/config/regions-schema.js';
import { normaliseUpstreamError } from '../../gateway/upstream/normalise-error.js';

const body = (name: string): string => readFileSync(`test/fixtures/upstream-errors/${name}`, 'utf8');

function normalise(status: number, file: string, engine: EngineKind) {
  const { error } = normaliseUpstreamError(status, body(file), engine);
  return { status: error.status, retryAfter: error.retryAfterSeconds, ...toOpenAIErrorBody(error).error };
}

describe('engine errors become OpenAI errors', () => {
  it.each([
    // status, fixture, engine, expected status, type, code, param
    [404, 'vllm-new-404.json', 'vllm', 404, 'invalid_request_error', 'model_not_found', 'model'],
    [404, 'ollama-404.json', 'ollama', 404, 'invalid_request_error', 'model_not_found', 'model'],
    [400, 'vllm-old-400.json', 'vllm', 400, 'invalid_request_error', 'context_length_exceeded', 'messages'],
    [400, 'llamacpp-400-ctx.json', 'llamacpp', 400, 'invalid_request_error', 'context_length_exceeded', 'messages'],
    [422, 'tgi-422.json', 'tgi', 422, 'invalid_request_error', 'context_length_exceeded', 'messages'],
    [400, 'sglang-400.json', 'sglang', 400, 'invalid_request_error', 'invalid_request', null],
  ] as const)('%i %s', (status, file, engine, wantStatus, type, code, param) => {
    const e = normalise(status, file, engine);
    expect(e).toMatchObject({ status: wantStatus, type, code, param });
    expect(e.message.length).toBeGreaterThan(5);
    expect(e.message).not.toMatch(/^\{/);
  });

  it('keeps the engine message for client errors', () => {
    expect(normalise(400, 'vllm-old-400.json', 'vllm').message).toMatch(/maximum context length is 8192/);
    expect(normalise(422, 'tgi-422.json', 'tgi').message).toMatch(/must be <= 4096/);
  });

  it('turns overload (TGI 429) into a retryable 503, never a 429 that blames the caller', () => {
    expect(normalise(429, 'tgi-429.json', 'tgi')).toMatchObject({ status: 503, type: 'server_error', retryAfter: 1 });
  });

  it('hides 5xx details and upstream credential problems from the client', () => {
    const e = normalise(500, 'llamacpp-500-badjson.json', 'llamacpp');
    expect(e).toMatchObject({ status: 502, type: 'server_error', code: 'upstream_error' });
    expect(e.message).not.toMatch(/json\.exception/);
    const auth = normalise(401, 'llamacpp-401.json', 'llamacpp');
    expect(auth).toMatchObject({ status: 502, code: 'upstream_error' });
  });

  it('copes with a body that is not JSON', () => {
    const { error } = normaliseUpstreamError(400, '<html>bad</html>', 'openai');
    expect(error.status).toBe(400);
    expect(error.message).toBe('The model server answered HTTP 400.');
  });
});
