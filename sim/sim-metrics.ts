import type { EngineSnapshot } from './batch-engine.js';

/**
 * vLLM V1's `/metrics` text, written by hand: the same names, HELP strings, label order
 * (`model_name`, `engine`, then the rest) and Python number formatting, so the probes that read a
 * real vLLM read the simulator unchanged.
 */

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Python's `repr(float)`: shortest round-trip digits, exponent below 1e-4 or from 1e16. */
function pythonRepr(d: number): string {
  const abs = Math.abs(d);
  if (abs !== 0 && (abs < 1e-4 || abs >= 1e16)) {
    // JS gives "1e-7" / "1.5e+21"; Python pads the exponent to two digits.
    return d.toExponential().replace(/e([+-])(\d)$/, 'e$10$2');
  }
  const s = String(d);
  return s.includes('.') || s.includes('e') ? s : `${s}.0`;
}

/**
 * prometheus_client's `floatToGoString`: Python's repr, but positive numbers with more than six
 * integer digits switch to exponent form (`1.393725e+06`), as Go does.
 */
export function formatPromValue(d: number): string {
  if (d === Number.POSITIVE_INFINITY) return '+Inf';
  if (d === Number.NEGATIVE_INFINITY) return '-Inf';
  if (Number.isNaN(d)) return 'NaN';
  const s = pythonRepr(d);
  const dot = s.indexOf('.');
  if (d > 0 && dot > 6) {
    const mantissa = `${s[0]}.${s.slice(1, dot)}${s.slice(dot + 1)}`.replace(/[0.]+$/, '');
    return `${mantissa}e+0${dot - 1}`;
  }
  return s;
}

/** A label value with the text format's three escapes. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter';
  readonly samples: ReadonlyArray<readonly [labels: string, value: number]>;
}

function render(families: readonly Family[]): string {
  const out: string[] = [];
  for (const f of families) {
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    for (const [labels, value] of f.samples) out.push(`${f.name}{${labels}} ${formatPromValue(value)}`);
  }
  return `${out.join('\n')}\n`;
}

/** A counter and its `_created` gauge, as prometheus_client exposes them. */
function counter(
  base: string,
  help: string,
  samples: Family['samples'],
  createdSeconds: number,
): Family[] {
  return [
    { name: `${base}_total`, help, type: 'counter', samples },
    { name: `${base}_created`, help, type: 'gauge', samples: samples.map(([l]) => [l, createdSeconds] as const) },
  ];
}

/** The exposition text for a snapshot; `startedAtMs` is the process start (for `_created`). */
export function renderVllmMetrics(snap: EngineSnapshot, startedAtMs: number): string {
  const created = startedAtMs / 1000;
  const models = [...snap.models.entries()].map(([name, c]) => ({
    labels: `model_name="${escapeLabel(name)}",engine="0"`,
    c,
  }));
  const per = (pick: (c: (typeof models)[number]['c']) => number): Family['samples'] =>
    models.map(({ labels, c }) => [labels, pick(c)] as const);
  const kv = per(() => snap.kvCacheUsage);
  const reasons = ['stop', 'length', 'abort'] as const;
  const success: Family['samples'] = models.flatMap(({ labels, c }) =>
    reasons.map((r) => [`${labels},finished_reason="${r}"`, c.finished[r]] as const),
  );
  return render([
    { name: 'vllm:num_requests_running', help: 'Number of requests in model execution batches.', type: 'gauge', samples: per((c) => c.running) },
    { name: 'vllm:num_requests_waiting', help: 'Number of requests waiting to be processed.', type: 'gauge', samples: per((c) => c.waiting) },
    {
      name: 'vllm:gpu_cache_usage_perc',
      help: 'GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.',
      type: 'gauge',
      samples: kv,
    },
    { name: 'vllm:kv_cache_usage_perc', help: 'KV-cache usage. 1 means 100 percent usage.', type: 'gauge', samples: kv },
    ...counter('vllm:num_preemptions', 'Cumulative number of preemption from the engine.', per(() => 0), created),
    ...counter('vllm:prompt_tokens', 'Number of prefill tokens processed.', per((c) => c.promptTokens), created),
    ...counter('vllm:generation_tokens', 'Number of generation tokens processed.', per((c) => c.generationTokens), created),
    ...counter('vllm:request_success', 'Count of successfully processed requests.', success, created),
  ]);
}
