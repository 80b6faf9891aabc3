import { describe, expect, it } from 'vitest';
import { DEFAULT_SIM_OPTIONS, parseSimArgs, validateSimOptions } from '../../sim/sim-options.js';

describe('parseSimArgs', () => {
  it('gives the documented defaults for no flags', () => {
    const o = parseSimArgs([]);
    expect(o).toEqual(DEFAULT_SIM_OPTIONS);
    expect(o).toMatchObject({
      host: '127.0.0.1',
      port: 8000,
      models: ['sim-small'],
      tokensPerSecond: 1000,
      maxSeqs: 32,
      ttftMs: 30,
      seed: 0,
      embeddingDim: 16,
      gpus: { count: 1, memoryGiB: 80, name: 'NVIDIA H100 80GB HBM3' },
    });
    expect(o.failures).toEqual({
      errorRate: 0, rate429: 0, rate503: 0, stallMs: 0, stallRate: 1, dropRate: 0, slowStartMs: 0,
    });
    expect(Object.isFrozen(o)).toBe(true);
    expect(Object.isFrozen(o.failures)).toBe(true);
  });

  it('parses every flag', () => {
    const o = parseSimArgs([
      '--port', '0', '--host', '0.0.0.0', '--models', 'a, b', '--tokens-per-second', '250.5', '--seq-tokens-per-second', '40',
      '--max-seqs', '4', '--ttft-ms', '0', '--seed', '42', '--error-rate', '0.1', '--rate-429', '0.2',
      '--rate-503', '0.3', '--stall-ms', '500', '--stall-rate', '0.5', '--drop-rate', '0.25',
      '--slow-start-ms', '2000', '--embedding-dim', '8', '--gpus', '8', '--gpu-memory-gib', '40',
      '--gpu-name', 'NVIDIA A100-SXM4-40GB',
    ]);
    expect(o).toEqual({
      host: '0.0.0.0',
      port: 0,
      models: ['a', 'b'],
      tokensPerSecond: 250.5,
      seqTokensPerSecond: 40,
      maxSeqs: 4,
      ttftMs: 0,
      seed: 42,
      failures: { errorRate: 0.1, rate429: 0.2, rate503: 0.3, stallMs: 500, stallRate: 0.5, dropRate: 0.25, slowStartMs: 2000 },
      embeddingDim: 8,
      gpus: { count: 8, memoryGiB: 40, name: 'NVIDIA A100-SXM4-40GB' },
    });
  });

  it('accepts --flag=value', () => {
    expect(parseSimArgs(['--port=9001', '--max-seqs=2']).maxSeqs).toBe(2);
  });

  it.each([
    [['--port', '-1'], /--port/],
    [['--port', '70000'], /--port/],
    [['--port', 'abc'], /--port/],
    [['--tokens-per-second', '0'], /--tokens-per-second/],
    [['--tokens-per-second', 'NaN'], /--tokens-per-second/],
    [['--seq-tokens-per-second', '-1'], /--seq-tokens-per-second/],
    [['--max-seqs', '0'], /--max-seqs/],
    [['--max-seqs', '1.5'], /--max-seqs/],
    [['--ttft-ms', '-5'], /--ttft-ms/],
    [['--seed', '0.5'], /--seed/],
    [['--error-rate', '1.5'], /--error-rate/],
    [['--rate-429', '-0.1'], /--rate-429/],
    [['--rate-503', 'x'], /--rate-503/],
    [['--stall-ms', '-1'], /--stall-ms/],
    [['--stall-rate', '2'], /--stall-rate/],
    [['--drop-rate', ''], /--drop-rate/],
    [['--slow-start-ms', 'Infinity'], /--slow-start-ms/],
    [['--embedding-dim', '0'], /--embedding-dim/],
    [['--gpus', '0'], /--gpus/],
    [['--gpus', '65'], /--gpus/],
    [['--gpu-memory-gib', '0'], /--gpu-memory-gib/],
    [['--gpu-name', ' '], /--gpu-name/],
    [['--models', 'a,,b'], /--models/],
    [['--models', 'a,a'], /--models/],
    [['--error-rate', '0.6', '--rate-429', '0.6'], /--error-rate \+ --rate-429 \+ --rate-503/],
  ])('rejects %j naming the flag', (argv, message) => {
    expect(() => parseSimArgs(argv)).toThrow(message);
  });

  it('rejects unknown flags and positionals', () => {
    expect(() => parseSimArgs(['--bogus', '1'])).toThrow(/bogus/);
    expect(() => parseSimArgs(['extra'])).toThrow(/extra/);
  });
});

describe('validateSimOptions', () => {
  it('accepts the defaults and rejects a bad programmatic value with the flag name', () => {
    expect(() => validateSimOptions(DEFAULT_SIM_OPTIONS)).not.toThrow();
    expect(() => validateSimOptions({ ...DEFAULT_SIM_OPTIONS, maxSeqs: 0 })).toThrow(/--max-seqs/);
    expect(() => validateSimOptions({ ...DEFAULT_SIM_OPTIONS, models: [] })).toThrow(/--models/);
    expect(() =>
      validateSimOptions({ ...DEFAULT_SIM_OPTIONS, failures: { ...DEFAULT_SIM_OPTIONS.failures, dropRate: -1 } }),
    ).toThrow(/--drop-rate/);
  });
});
