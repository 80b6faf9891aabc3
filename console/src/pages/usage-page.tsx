import { useEffect, useMemo, useState } from 'preact/hooks';
import { admin, type List } from '../api.js';
import { Notice, errorText } from '../components/notice.js';
import { TimeChart, type Series } from '../components/time-chart.js';
import type { UsagePoint, UsageRow } from '../types.js';

const GROUPS = ['tenant', 'key', 'model', 'region', 'node'] as const;
type Group = (typeof GROUPS)[number];
const RANGES = [
  { label: 'Last hour', ms: 3600_000 },
  { label: 'Last 24 hours', ms: 24 * 3600_000 },
  { label: 'Last 7 days', ms: 7 * 24 * 3600_000 },
] as const;

/** `datetime-local` wants local time without a zone. */
function localInput(d: Date): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function csv(rows: UsageRow[], groupBy: string, from: Date, to: Date): string {
  const quote = (v: string): string => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  const head = [groupBy, 'requests', 'prompt_tokens', 'completion_tokens', 'errors', 'from', 'to'].join(',');
  return [head, ...rows.map((r) => [quote(r.group ?? ''), r.requests, r.prompt_tokens, r.completion_tokens, r.errors, from.toISOString(), to.toISOString()].join(','))].join('\n') + '\n';
}

/** Requests and tokens per group over a time range: charts, a table and a CSV of the table. */
export function UsagePage() {
  const [groupBy, setGroupBy] = useState<Group>('tenant');
  const [range, setRange] = useState(() => ({ from: new Date(Date.now() - 24 * 3600_000), to: new Date(Date.now() + 60_000) }));
  const [rows, setRows] = useState<UsageRow[]>([]);
  const [points, setPoints] = useState<UsagePoint[]>([]);
  const [bucket, setBucket] = useState(60);
  const [error, setError] = useState<string | undefined>();
  const [loading, setLoading] = useState(false);

  const load = (): void => {
    const q = `from=${encodeURIComponent(range.from.toISOString())}&to=${encodeURIComponent(range.to.toISOString())}&groupBy=${groupBy}`;
    setLoading(true);
    setError(undefined);
    Promise.all([admin.get<List<UsageRow>>(`/usage?${q}`), admin.get<List<UsagePoint> & { bucket_seconds: number }>(`/usage/series?${q}`)])
      .then(
        ([table, series]) => {
          setRows(table.data);
          setPoints(series.data);
          setBucket(series.bucket_seconds);
        },
        (err: unknown) => setError(errorText(err)),
      )
      .finally(() => setLoading(false));
  };
  useEffect(load, [groupBy, range]);

  const chart = useMemo(() => {
    const times = [...new Set(points.map((p) => Date.parse(p.bucket) / 1000))].sort((a, b) => a - b);
    const groups = [...new Set(points.map((p) => p.group ?? '(none)'))].slice(0, 8);
    const at = new Map(times.map((t, i) => [t, i]));
    const make = (value: (p: UsagePoint) => number): Series[] =>
      groups.map((g) => {
        const values: Array<number | null> = times.map(() => 0);
        for (const p of points) if ((p.group ?? '(none)') === g) values[at.get(Date.parse(p.bucket) / 1000) ?? 0] = value(p);
        return { label: g, values };
      });
    return { times, requests: make((p) => p.requests), tokens: make((p) => p.prompt_tokens + p.completion_tokens) };
  }, [points]);

  const download = (): void => {
    const url = URL.createObjectURL(new Blob([csv(rows, groupBy, range.from, range.to)], { type: 'text/csv' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `switchyard-usage-by-${groupBy}.csv`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };

  const setFrom = (v: string): void => (v === '' ? undefined : setRange({ ...range, from: new Date(v) }));
  const setTo = (v: string): void => (v === '' ? undefined : setRange({ ...range, to: new Date(v) }));
  return (
    <>
      <h1>Usage</h1>
      <form class="toolbar" onSubmit={(e) => (e.preventDefault(), load())} aria-label="Usage range and grouping">
        <label>
          Group by{' '}
          <select value={groupBy} onChange={(e) => setGroupBy(e.currentTarget.value as Group)}>
            {GROUPS.map((g) => (
              <option key={g} value={g}>
                {g}
              </option>
            ))}
          </select>
        </label>
        <label>
          From <input type="datetime-local" value={localInput(range.from)} onChange={(e) => setFrom(e.currentTarget.value)} />
        </label>
        <label>
          To <input type="datetime-local" value={localInput(range.to)} onChange={(e) => setTo(e.currentTarget.value)} />
        </label>
        {RANGES.map((r) => (
          <button key={r.label} type="button" onClick={() => setRange({ from: new Date(Date.now() - r.ms), to: new Date(Date.now() + 60_000) })}>
            {r.label}
          </button>
        ))}
        <button type="submit" class="primary">
          Refresh
        </button>
        <button type="button" onClick={download} disabled={rows.length === 0}>
          Export CSV
        </button>
      </form>
      {error !== undefined && <Notice kind="error">{error}</Notice>}
      <p class="muted" role="status">
        {loading ? 'Loading…' : `${rows.reduce((n, r) => n + r.requests, 0)} requests from ${range.from.toLocaleString()} to ${range.to.toLocaleString()}, per ${bucket / 60} min in the charts.`}
      </p>
      <div class="charts">
        {/* seconds, as uPlot's time scale wants */}
        <TimeChart title={`Requests per ${groupBy}`} times={chart.times} series={chart.requests} range={[range.from.getTime() / 1000, range.to.getTime() / 1000]} />
        <TimeChart title={`Tokens (prompt + completion) per ${groupBy}`} times={chart.times} series={chart.tokens} range={[range.from.getTime() / 1000, range.to.getTime() / 1000]} />
      </div>
      <div class="table-wrap">
        <table data-testid="usage-table">
          <caption>Totals per {groupBy}</caption>
          <thead>
            <tr>
              <th scope="col">{groupBy}</th>
              <th scope="col">Requests</th>
              <th scope="col">Prompt tokens</th>
              <th scope="col">Completion tokens</th>
              <th scope="col">Errors</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.group ?? '(none)'}>
                <th scope="row">{r.group ?? '(none)'}</th>
                <td class="num">{r.requests.toLocaleString()}</td>
                <td class="num">{r.prompt_tokens.toLocaleString()}</td>
                <td class="num">{r.completion_tokens.toLocaleString()}</td>
                <td class="num">{r.errors.toLocaleString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {rows.length === 0 && !loading && <p class="muted">No requests in this range.</p>}
    </>
  );
}
