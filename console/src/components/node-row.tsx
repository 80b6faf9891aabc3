import type { ComponentChildren } from 'preact';
import type { FleetNode } from '../types.js';

/** A node's state in words (colour only repeats it). */
export function nodeState(n: FleetNode): { text: string; tone: 'ok' | 'warn' | 'bad' } {
  if (n.draining) return { text: 'Draining', tone: 'warn' };
  if (n.engine_down) return { text: 'Engine down', tone: 'bad' };
  if (!n.healthy) return { text: 'Unhealthy', tone: 'bad' };
  if (n.ejected) return { text: 'Ejected (failing)', tone: 'bad' };
  if (n.fresh === false) return { text: n.report_age_ms === null ? 'No agent yet' : 'Agent stale', tone: 'bad' };
  return n.available ? { text: 'Serving', tone: 'ok' } : { text: 'Not serving', tone: 'bad' };
}

function age(ms: number | null): string {
  if (ms === null) return '—';
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms < 3_600_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 3_600_000)} h`;
}

function Meter({ label, value, max }: { label: string; value: number; max: number }) {
  const ratio = max > 0 ? Math.min(1, value / max) : 0;
  return (
    <span class="meter-cell">
      <meter min={0} max={1} value={ratio} aria-label={label} />
      <span class="num">
        {Math.round(value).toLocaleString()} / {Math.round(max).toLocaleString()}
      </span>
    </span>
  );
}

/** "2 GPUs · 37% · 61 / 160 GiB": utilisation and memory of the node's GPUs together. */
function gpuText(g: FleetNode['gpu']): string {
  if (g === null) return '—';
  const gib = (b: number): string => (b / 2 ** 30).toFixed(0);
  const util = g.utilization === null ? '' : ` · ${Math.round(g.utilization * 100)}%`;
  const mem = g.memory_used_bytes === null || g.memory_total_bytes === null ? '' : ` · ${gib(g.memory_used_bytes)} / ${gib(g.memory_total_bytes)} GiB`;
  return `${g.count} GPU${g.count === 1 ? '' : 's'}${util}${mem}`;
}

export function NodeRow({ node: n, children }: { node: FleetNode; children: ComponentChildren }) {
  const state = nodeState(n);
  return (
    <tr data-node={n.id}>
      <th scope="row">
        <span class="node-id">{n.id}</span>
        <span class="muted small">
          {n.engine} · {n.models.join(', ')}
        </span>
      </th>
      <td>
        <span class={`badge badge-${state.tone}`}>{state.text}</span>
      </td>
      <td class="num">{age(n.report_age_ms)}</td>
      <td class="num">{n.running === null ? '—' : `${n.running} / ${n.waiting ?? 0}`}</td>
      <td class="num">{n.kv_cache_usage === null ? '—' : `${Math.round(n.kv_cache_usage * 100)}%`}</td>
      <td class="num wrap">{gpuText(n.gpu)}</td>
      <td>
        <Meter label={`${n.id} sequences reserved`} value={n.reserved.sequences} max={n.capacity.max_sequences} />
        <Meter label={`${n.id} tokens reserved`} value={n.reserved.tokens} max={n.capacity.token_budget} />
      </td>
      <td class="num">
        {n.tokens_per_second === null ? '—' : Math.round(n.tokens_per_second).toLocaleString()}
        <span class="muted small"> of {Math.round(n.capacity.tokens_per_second).toLocaleString()}</span>
      </td>
      <td class="actions">{children}</td>
    </tr>
  );
}
