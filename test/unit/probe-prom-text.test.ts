import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  hasMetricPrefix,
  meanMetric,
  parsePromText,
  parsePromValue,
  pickMetric,
  sumMetric,
} from '../../gpu-agent/probes/prom-text.js';

const fixture = (name: string): string => readFileSync(`test/fixtures/probes/${name}`, 'utf8');

function strictParse(text: string): ReturnType<typeof parsePromText> {
  const invalid: string[] = [];
  const samples = parsePromText(text, (n, line, reason) => invalid.push(`${n}: ${reason}: ${line}`));
  expect(invalid).toEqual([]);
  return samples;
}

describe('parsePromText over real scrapes', () => {
  it.each([
    ['vllm.prom', 172],
    ['sglang.prom', 88],
    ['llamacpp.prom', 15],
    ['dcgm.prom', 54],
    ['dcgm-mig.prom', 48],
    ['dcgm-mig-k8s.prom', 43],
    ['tgi.prom', 51],
  ])('%s: every non-comment line is a sample', (name, count) => {
    const text = fixture(name);
    const expected = text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#')).length;
    const samples = strictParse(text);
    expect(samples).toHaveLength(expected);
    expect(samples).toHaveLength(count);
  });

  it('reads exponent notation and keeps _created series as their own metric', () => {
    const s = strictParse(fixture('vllm.prom'));
    expect(sumMetric(s, 'vllm:prompt_tokens_total')).toBe(1_393_725);
    expect(sumMetric(s, 'process_resident_memory_bytes')).toBe(2_812_645_376);
    expect(pickMetric(s, 'vllm:prompt_tokens_created')).toBe(1_764_181_022.4512);
  });

  it('keeps every label, in any order, including empty ones', () => {
    const s = strictParse(fixture('vllm.prom'));
    const info = s.find((x) => x.name === 'vllm:cache_config_info');
    expect(info?.labels['num_gpu_blocks']).toBe('29286');
    expect(info?.labels['swap_space_bytes']).toBe('4294967296');
    expect(pickMetric(s, 'vllm:request_success_total', { finished_reason: 'length' })).toBe(329);
    expect(sumMetric(s, 'vllm:request_success_total')).toBe(1511 + 329 + 3);
  });

  it('reads histogram buckets with le="+Inf"', () => {
    const s = strictParse(fixture('tgi.prom'));
    expect(pickMetric(s, 'tgi_request_input_length_bucket', { le: '+Inf' })).toBe(2398);
  });
});

describe('parsePromText edge cases', () => {
  it('reads NaN, +Inf, -Inf and signed values', () => {
    const s = strictParse('a NaN\nb +Inf\nc -Inf\nd -1.5e-3\ne +7\nf .5\ng 1E3\n');
    expect(s.map((x) => x.value)).toEqual([NaN, Infinity, -Infinity, -0.0015, 7, 0.5, 1000]);
  });

  it('unescapes \\\\, \\" and \\n in label values, and allows , } = inside them', () => {
    const [s] = strictParse(String.raw`m{path="C:\\dir",q="say \"hi\"",multi="a\nb",odd="x,}=y"} 1` + '\n');
    expect(s?.labels).toEqual({ path: 'C:\\dir', q: 'say "hi"', multi: 'a\nb', odd: 'x,}=y' });
  });

  it('reads a timestamp after the value and keeps it apart from the value', () => {
    const s = strictParse('up{job="x"} 1 1712345678901\nother 2.5\n');
    expect(s[0]).toEqual({ name: 'up', labels: { job: 'x' }, value: 1, timestampMs: 1712345678901 });
    expect(s[1]).toEqual({ name: 'other', labels: {}, value: 2.5 });
    expect(s[1]).not.toHaveProperty('timestampMs');
  });

  it('skips HELP, TYPE, other comments, blank lines, CRLF, a trailing comma and OpenMetrics extras', () => {
    const text =
      '# HELP x Some help with {braces} and "quotes"\r\n# TYPE x gauge\r\n\r\n   \r\n' +
      '# just a comment\r\nx{a="1",} 3\r\n' +
      'y_total 4 # {trace_id="abc"} 1.0\n  z 5\n# EOF\n';
    const s = strictParse(text);
    expect(s.map((x) => [x.name, x.value])).toEqual([['x', 3], ['y_total', 4], ['z', 5]]);
    expect(s[0]?.labels).toEqual({ a: '1' });
  });

  it('reports and skips invalid lines without losing the valid ones', () => {
    const bad: [number, string][] = [];
    const text = [
      'ok 1',
      'no_value',
      'bad_value{a="1"} one',
      'unterminated{a="1} 2',
      'bad_escape{a="\\t"} 2',
      'dup{a="1",a="2"} 2',
      '9starts_with_digit 1',
      'bad_ts 1 12.5',
      'trailing 1 2 3',
      'ok2{b="2"} 2',
    ].join('\n');
    const s = parsePromText(text, (n, _line, reason) => bad.push([n, reason]));
    expect(s.map((x) => x.name)).toEqual(['ok', 'ok2']);
    expect(bad.map(([n]) => n)).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('parsePromValue rejects what Go rejects', () => {
    expect(parsePromValue('1.393725e+06')).toBe(1_393_725);
    expect(parsePromValue('Inf')).toBe(Infinity);
    expect(parsePromValue('')).toBeUndefined();
    expect(parsePromValue('1,5')).toBeUndefined();
    expect(parsePromValue('0x10')).toBeUndefined();
    expect(parsePromValue('1e')).toBeUndefined();
  });
});

describe('metric helpers', () => {
  const s = parsePromText('r{e="0"} 2\nr{e="1"} 3\nr{e="2"} NaN\nu{e="0"} 0.2\nu{e="1"} 0.6\nn NaN\n');

  it('sum over label sets, ignoring NaN; null for an absent or all-NaN metric', () => {
    expect(sumMetric(s, 'r')).toBe(5);
    expect(sumMetric(s, 'r', (l) => l['e'] === '1')).toBe(3);
    expect(sumMetric(s, 'missing')).toBeNull();
    expect(sumMetric(s, 'n')).toBeNull();
  });

  it('mean for ratios, pick by labels, prefix detection', () => {
    expect(meanMetric(s, 'u')).toBeCloseTo(0.4);
    expect(pickMetric(s, 'u', { e: '1' })).toBe(0.6);
    expect(pickMetric(s, 'u', { e: '9' })).toBeNull();
    expect(hasMetricPrefix(s, 'u')).toBe(true);
    expect(hasMetricPrefix(s, 'vllm:')).toBe(false);
  });
});
