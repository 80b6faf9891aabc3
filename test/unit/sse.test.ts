import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { extractUsage, hasUsageObject, isUsageOnlyChunk, parseEventData, SseSplitter } from '../../gateway/upstream/sse.js';

const fixture = (name: string): Buffer => readFileSync(`test/fixtures/openai/${name}`);

function split(chunks: Buffer[]): string[] {
  const s = new SseSplitter();
  const out: string[] = [];
  for (const c of chunks) s.push(c, (e) => out.push(e.toString()));
  return out;
}

describe('SseSplitter', () => {
  it('yields the same events whatever the chunking, byte by byte included', () => {
    const raw = fixture('chat-stream-include-usage.sse');
    const whole = split([raw]);
    expect(whole).toHaveLength(6);
    expect(whole.join('')).toBe(raw.toString());
    const bytes = split([...raw].map((b) => Buffer.from([b])));
    expect(bytes).toEqual(whole);
    const odd: Buffer[] = [];
    for (let i = 0; i < raw.length; i += 37) odd.push(raw.subarray(i, i + 37));
    expect(split(odd)).toEqual(whole);
  });

  it('handles CRLF framing and keeps an incomplete tail', () => {
    const s = new SseSplitter();
    const out: string[] = [];
    s.push(Buffer.from('data: a\r\n\r\ndata: b\r\n\r\ndata: c'), (e) => out.push(e.toString()));
    expect(out).toEqual(['data: a\r\n\r\n', 'data: b\r\n\r\n']);
    expect(s.rest()?.toString()).toBe('data: c');
  });

  it('splits llama.cpp streams, whose first chunk has content null', () => {
    const events = split([fixture('llamacpp-chat-stream.sse')]);
    expect(events.length).toBeGreaterThan(2);
    expect(events.at(-1)).toBe('data: [DONE]\n\n');
  });
});

describe('usage', () => {
  it('finds the usage trailer and only that one', () => {
    const events = split([fixture('chat-stream-include-usage.sse')]).map((e) => Buffer.from(e));
    const withUsage = events.filter(hasUsageObject);
    expect(withUsage).toHaveLength(1); // `"usage":null` on the other chunks does not count
    const data = parseEventData(withUsage[0] as Buffer);
    expect(isUsageOnlyChunk(data)).toBe(true);
    expect(isUsageOnlyChunk(parseEventData(events[1] as Buffer))).toBe(false);
    expect(parseEventData(events.at(-1) as Buffer)).toBeUndefined();
  });

  it('extracts usage from a whole body without parsing it', () => {
    expect(extractUsage(fixture('chat-response.json'))).toMatchObject({ prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number) });
    const emb = extractUsage(fixture('embeddings-response.json'));
    expect(emb?.prompt_tokens).toBeGreaterThan(0);
    expect(emb?.completion_tokens).toBe(0);
    expect(extractUsage(Buffer.from('{"id":1}'))).toBeUndefined();
  });
});
