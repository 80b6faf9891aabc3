import { describe, expect, it } from 'vitest';
import type { InferenceBody } from '../../gateway/routes/v1/schemas.js';
import { bodyAskingForUsage } from '../../gateway/routes/v1/stream-usage.js';

const ask = (raw: string): unknown => {
  const out = bodyAskingForUsage(Buffer.from(raw), JSON.parse(raw) as InferenceBody);
  return JSON.parse(out.toString());
};

describe('bodyAskingForUsage', () => {
  it('splices the option into the bytes the client sent, leaving the rest as it was', () => {
    const raw = '  {"model":"m","stream":true,"messages":[{"role":"user","content":"say \\"{\\" é ✓"}]}';
    const out = bodyAskingForUsage(Buffer.from(raw), JSON.parse(raw) as InferenceBody);
    expect(Buffer.isBuffer(out)).toBe(true);
    expect(out.toString()).toBe('  {"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[{"role":"user","content":"say \\"{\\" é ✓"}]}');
    expect(ask(raw)).toEqual({ ...(JSON.parse(raw) as object), stream_options: { include_usage: true } });
  });

  it('sets include_usage in options the client sent, null ones included', () => {
    expect(ask('{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1},"prompt":"p"}')).toEqual({
      model: 'm', stream: true, stream_options: { include_usage: true, x: 1 }, prompt: 'p',
    });
    expect(ask('{"model":"m","stream":true,"stream_options":null,"prompt":"p"}')).toEqual({ model: 'm', stream: true, stream_options: { include_usage: true }, prompt: 'p' });
  });
});
