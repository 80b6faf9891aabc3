import type { Registry } from 'prom-client';

/*
 * Counters and histograms for the per-request path. prom-client hashes and validates the labels
 * on every inc/observe, even on a child from `labels()` (about 1 µs each, several per request).
 * Here a child is resolved once and keeps plain numbers; the registry reads them at scrape time in
 * prom-client's own format (its `get()` shape), so /metrics, its text and Prometheus are unchanged.
 */

type Labels = Readonly<Record<string, string | number>>;

interface MetricValue {
  readonly labels: Labels;
  readonly value: number;
  readonly metricName?: string;
}

interface MetricData {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly values: MetricValue[];
  readonly aggregator: 'sum';
}

export interface CounterChild {
  inc(value?: number): void;
}

export interface HistogramChild {
  observe(value: number): void;
}

class CounterCell implements CounterChild {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(value = 1): void {
    this.value += value;
  }
}

class HistogramCell implements HistogramChild {
  /** Observations per bucket (not cumulative); the last one is above every bound (+Inf). */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > (b[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

abstract class HotMetric<L extends string, C> {
  protected readonly cells = new Map<string, C>();
  readonly aggregator = 'sum' as const;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly L[],
    registry: Registry,
  ) {
    // prom-client's registry takes any object with name, help, type and get().
    registry.registerMetric(this as never);
  }

  /** The child for these label values, in `labelNames` order. Keep it: resolving joins a key. */
  labels(...values: string[]): C {
    if (values.length !== this.labelNames.length) throw new Error(`${this.name}: expected ${this.labelNames.length} label values, got ${values.length}`);
    const key = values.join('\u0000');
    let cell = this.cells.get(key);
    if (cell === undefined) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i] as string));
      cell = this.make(labels);
      this.cells.set(key, cell);
    }
    return cell;
  }

  reset(): void {
    this.cells.clear();
  }

  protected abstract make(labels: Labels): C;
}

/** A counter whose children are plain additions. */
export class HotCounter<L extends string> extends HotMetric<L, CounterCell> {
  readonly type = 'counter' as const;

  protected make(labels: Labels): CounterCell {
    return new CounterCell(labels);
  }

  get(): Promise<MetricData> {
    const values: MetricValue[] = [];
    for (const c of this.cells.values()) values.push({ labels: c.labels, value: c.value });
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }
}

/** A histogram whose children count into their own buckets. */
export class HotHistogram<L extends string> extends HotMetric<L, HistogramCell> {
  readonly type = 'histogram' as const;

  constructor(name: string, help: string, labelNames: readonly L[], readonly buckets: readonly number[], registry: Registry) {
    super(name, help, labelNames, registry);
  }

  protected make(labels: Labels): HistogramCell {
    return new HistogramCell(labels, this.buckets);
  }

  get(): Promise<MetricData> {
    const values: MetricValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const c of this.cells.values()) {
      let acc = 0;
      this.buckets.forEach((le, i) => {
        acc += c.counts[i] as number;
        values.push({ labels: { le, ...c.labels }, value: acc, metricName: bucket });
      });
      values.push({ labels: { le: '+Inf', ...c.labels }, value: c.count, metricName: bucket });
      values.push({ labels: c.labels, value: c.sum, metricName: `${this.name}_sum` });
      values.push({ labels: c.labels, value: c.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }
}
