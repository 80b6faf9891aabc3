/**
 * Prometheus text exposition format (0.0.4), read the way Prometheus reads it: one sample per
 * line, `# HELP`/`# TYPE`/other comments skipped, Go float syntax for values (`NaN`, `+Inf`,
 * `-Inf`, exponents), an optional integer timestamp after the value, and label values with the
 * three escapes `\\`, `\"` and `\n`. OpenMetrics' `# EOF` and exemplars (`# {...} v`) are
 * tolerated so that an exporter that negotiates OpenMetrics does not break the probe.
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  /** Milliseconds since the epoch, only when the line carries one. */
  readonly timestampMs?: number;
}

/** Called for each line that is not a valid sample; the line is skipped. */
export type OnInvalidLine = (lineNo: number, line: string, reason: string) => void;

const NAME_START = /[a-zA-Z_:]/;
const NAME_CHAR = /[a-zA-Z0-9_:]/;
const LABEL_START = /[a-zA-Z_]/;
const LABEL_CHAR = /[a-zA-Z0-9_]/;
const FINITE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const INTEGER = /^-?\d+$/;

/** Go's strconv.ParseFloat as Prometheus uses it, minus hex floats; NaN marks a syntax error. */
export function parsePromValue(raw: string): number | undefined {
  if (FINITE.test(raw)) return Number(raw);
  const lower = raw.toLowerCase();
  if (lower === 'nan') return Number.NaN;
  if (lower === '+inf' || lower === 'inf' || lower === '+infinity' || lower === 'infinity') return Infinity;
  if (lower === '-inf' || lower === '-infinity') return -Infinity;
  return undefined;
}

class LineError extends Error {}

class Cursor {
  pos = 0;
  constructor(readonly s: string) {}
  peek(): string | undefined {
    return this.s[this.pos];
  }
  skipSpaces(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++;
  }
  expect(ch: string): void {
    if (this.peek() !== ch) throw new LineError(`expected '${ch}' at column ${this.pos + 1}`);
    this.pos++;
  }
  ident(start: RegExp, rest: RegExp, what: string): string {
    const from = this.pos;
    const first = this.peek();
    if (first === undefined || !start.test(first)) throw new LineError(`expected ${what} at column ${this.pos + 1}`);
    this.pos++;
    for (let c = this.peek(); c !== undefined && rest.test(c); c = this.peek()) this.pos++;
    return this.s.slice(from, this.pos);
  }
  quoted(): string {
    this.expect('"');
    let out = '';
    for (;;) {
      const c = this.s[this.pos++];
      if (c === undefined) throw new LineError('unterminated label value');
      if (c === '"') return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = this.s[this.pos++];
      if (e === '\\') out += '\\';
      else if (e === '"') out += '"';
      else if (e === 'n') out += '\n';
      else throw new LineError(`invalid escape '\\${e ?? ''}' in label value`);
    }
  }
  word(): string {
    const from = this.pos;
    for (let c = this.peek(); c !== undefined && c !== ' ' && c !== '\t'; c = this.peek()) this.pos++;
    return this.s.slice(from, this.pos);
  }
}

function parseLabels(cur: Cursor): Record<string, string> {
  const labels: Record<string, string> = {};
  cur.expect('{');
  for (;;) {
    cur.skipSpaces();
    if (cur.peek() === '}') break;
    const name = cur.ident(LABEL_START, LABEL_CHAR, 'label name');
    cur.skipSpaces();
    cur.expect('=');
    cur.skipSpaces();
    if (Object.hasOwn(labels, name)) throw new LineError(`duplicate label '${name}'`);
    labels[name] = cur.quoted();
    cur.skipSpaces();
    if (cur.peek() === ',') cur.pos++;
    else if (cur.peek() !== '}') throw new LineError(`expected ',' or '}' at column ${cur.pos + 1}`);
  }
  cur.expect('}');
  return labels;
}

function parseLine(line: string): Sample {
  const cur = new Cursor(line);
  cur.skipSpaces();
  const name = cur.ident(NAME_START, NAME_CHAR, 'metric name');
  cur.skipSpaces();
  const labels = cur.peek() === '{' ? parseLabels(cur) : {};
  cur.skipSpaces();
  const rawValue = cur.word();
  if (rawValue === '') throw new LineError('missing value');
  const value = parsePromValue(rawValue);
  if (value === undefined) throw new LineError(`invalid value '${rawValue}'`);
  cur.skipSpaces();
  let timestampMs: number | undefined;
  if (cur.peek() !== undefined && cur.peek() !== '#') {
    const rawTs = cur.word();
    if (!INTEGER.test(rawTs)) throw new LineError(`invalid timestamp '${rawTs}'`);
    timestampMs = Number(rawTs);
    cur.skipSpaces();
  }
  // What remains may only be an OpenMetrics exemplar, which carries nothing a probe needs.
  if (cur.peek() !== undefined && cur.peek() !== '#') throw new LineError(`unexpected text at column ${cur.pos + 1}`);
  return timestampMs === undefined ? { name, labels, value } : { name, labels, value, timestampMs };
}

/** Every sample in a scrape, in order. Invalid lines are skipped and reported to `onInvalid`. */
export function parsePromText(text: string, onInvalid?: OnInvalidLine): Sample[] {
  const samples: Sample[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').replace(/\r$/, '');
    const trimmed = line.trimStart();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    try {
      samples.push(parseLine(line));
    } catch (err: unknown) {
      if (!(err instanceof LineError)) throw err;
      onInvalid?.(i + 1, line, err.message);
    }
  }
  return samples;
}

export type LabelFilter = (labels: Readonly<Record<string, string>>) => boolean;

/** The values of one metric, NaN dropped: NaN is how exporters say "no reading". */
export function metricValues(samples: readonly Sample[], name: string, filter?: LabelFilter): number[] {
  const out: number[] = [];
  for (const s of samples) {
    if (s.name !== name || Number.isNaN(s.value)) continue;
    if (filter && !filter(s.labels)) continue;
    out.push(s.value);
  }
  return out;
}

/** Sum over every series of `name` (all label sets); null when the metric is absent. */
export function sumMetric(samples: readonly Sample[], name: string, filter?: LabelFilter): number | null {
  const values = metricValues(samples, name, filter);
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0);
}

/** Mean over every series of `name`: the right aggregate for ratios such as cache usage. */
export function meanMetric(samples: readonly Sample[], name: string, filter?: LabelFilter): number | null {
  const sum = sumMetric(samples, name, filter);
  return sum === null ? null : sum / metricValues(samples, name, filter).length;
}

/** The first series of `name` whose labels include every pair in `match`; null when none. */
export function pickMetric(
  samples: readonly Sample[],
  name: string,
  match: Readonly<Record<string, string>> = {},
): number | null {
  const values = metricValues(samples, name, (labels) =>
    Object.entries(match).every(([k, v]) => labels[k] === v),
  );
  return values[0] ?? null;
}

/** Whether any sample's name starts with `prefix`. */
export function hasMetricPrefix(samples: readonly Sample[], prefix: string): boolean {
  return samples.some((s) => s.name.startsWith(prefix));
}
