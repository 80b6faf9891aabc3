import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HotCounter, HotHistogram } from '../../core/hot-metrics.js';

/** The hot metrics must expose exactly what prom-client's own metrics would for the same events. */
describe('hot metrics', () => {
  const buckets = [0.001, 0.01, 0.1, 1];
  const samples: Array<[string, string, number]> = [
    ['chat', 'r1', 0.0005],
    ['chat', 'r1', 0.01], // on a bound: counts in that bucket (le is inclusive)
    ['chat', 'r2', 0.5],
    ['chat', 'r2', 7], // above every bound: +Inf only
    ['with "quotes"\nand a newline', 'r1', 0.02],
  ];

  it('a histogram scrapes as prom-client would expose it', async () => {
    const theirs = new Registry();
    const ours = new Registry();
    const ref = new Histogram({ name: 'h_seconds', help: 'help "text"\\', labelNames: ['route', 'region'], buckets, registers: [theirs] });
    const hot = new HotHistogram('h_seconds', 'help "text"\\', ['route', 'region'], buckets, ours);
    for (const [route, region, v] of samples) {
      ref.labels(route, region).observe(v);
      hot.labels(route, region).observe(v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it('a counter scrapes as prom-client would expose it, increments and all', async () => {
    const theirs = new Registry();
    const ours = new Registry();
    const ref = new Counter({ name: 'c_total', help: 'help', labelNames: ['route', 'region'], registers: [theirs] });
    const hot = new HotCounter('c_total', 'help', ['route', 'region'], ours);
    for (const [route, region, v] of samples) {
      ref.labels(route, region).inc(v);
      hot.labels(route, region).inc(v);
      ref.labels(route, region).inc();
      hot.labels(route, region).inc();
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    // A child resolved once keeps counting into the same series.
    const child = hot.labels('chat', 'r1');
    child.inc(2);
    expect(await ours.metrics()).toContain('c_total{route="chat",region="r1"} 4.0105');
  });

  it('refuses the wrong number of label values', () => {
    const hot = new HotCounter('x_total', 'x', ['a', 'b'], new Registry());
    expect(() => hot.labels('only-one')).toThrow(/expected 2 label values/);
  });
});
