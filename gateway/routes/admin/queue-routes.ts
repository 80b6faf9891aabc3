import type { FastifyInstance } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../../core/errors.js';
import type { Registry } from '../../../core/metrics.js';
import type { ResponseStore, StoredResponse } from '../../../core/storage/response-store.js';
import type { JobQueue } from '../../responses/background-jobs.js';

export interface QueueViewDeps {
  readonly registry: Registry | undefined;
  readonly responses: { readonly store: ResponseStore; readonly jobs: JobQueue | undefined } | undefined;
}

interface MetricValue {
  readonly labels: Record<string, string | number | undefined>;
  readonly value: number;
  readonly metricName?: string;
}

async function values(registry: Registry | undefined, name: string): Promise<MetricValue[]> {
  const metric = registry?.getSingleMetric(name);
  return metric === undefined ? [] : ((await metric.get()).values as MetricValue[]);
}

/** The smallest bucket bound under which at least `q` of the observations fall (Prometheus-style, no interpolation). */
function quantile(buckets: ReadonlyArray<{ le: number; count: number }>, total: number, q: number): number | null {
  if (total === 0) return null;
  for (const b of buckets) if (b.count >= q * total) return Number.isFinite(b.le) ? b.le : null;
  return null;
}

/**
 * `GET /admin/v1/queues`: this gateway's admission queues (depth and queued tokens per model and
 * region), wait times per priority class since start, rejections by reason and 429s by limit;
 * and its region's background responses (`GET /admin/v1/responses`, cancel with
 * `POST /admin/v1/responses/:id/cancel`).
 */
export function queueRoutes(admin: FastifyInstance, deps: QueueViewDeps): void {
  admin.get('/queues', async () => {
    const depth = await values(deps.registry, 'switchyard_queue_depth');
    const tokens = await values(deps.registry, 'switchyard_queue_tokens');
    const queues = depth.map((d) => ({
      model: String(d.labels.model),
      region: String(d.labels.region),
      waiting: d.value,
      queued_tokens: tokens.find((t) => t.labels.model === d.labels.model && t.labels.region === d.labels.region)?.value ?? 0,
    }));
    const waitValues = await values(deps.registry, 'switchyard_queue_wait_seconds');
    const priorities = [...new Set(waitValues.map((v) => String(v.labels.priority)))];
    const wait = priorities.map((priority) => {
      const mine = waitValues.filter((v) => v.labels.priority === priority);
      const count = mine.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
      const sum = mine.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0;
      const buckets = mine
        .filter((v) => v.metricName?.endsWith('_bucket'))
        .map((v) => ({ le: v.labels.le === '+Inf' ? Infinity : Number(v.labels.le), count: v.value }))
        .sort((a, b) => a.le - b.le);
      return {
        priority,
        admitted: count,
        mean_seconds: count === 0 ? null : sum / count,
        p50_seconds_at_most: quantile(buckets, count, 0.5),
        p95_seconds_at_most: quantile(buckets, count, 0.95),
      };
    });
    const byReason = async (name: string): Promise<Record<string, number>> =>
      Object.fromEntries((await values(deps.registry, name)).map((v) => [String(v.labels.reason), v.value]));
    const workers = (await values(deps.registry, 'switchyard_background_workers'))[0]?.value ?? null;
    return {
      object: 'queues',
      queues,
      wait,
      rejections: await byReason('switchyard_queue_rejections_total'),
      rate_limited: await byReason('switchyard_rate_limited_total'),
      background: { workers, unavailable: deps.responses?.jobs?.unavailable(Date.now()) ?? null },
    };
  });

  admin.get('/responses', async (request) => {
    const jobs = deps.responses?.jobs;
    if (deps.responses === undefined || jobs?.list === undefined) {
      throw new SwitchyardError(ErrorCode.InvalidRequest, 'Background responses are off on this gateway (they need REDIS_URL, or switchyard start).', {
        status: 409,
      });
    }
    const limit = Math.min(500, Math.max(1, Number((request.query as { limit?: string }).limit ?? 100) || 100));
    const listed = await jobs.list(limit);
    const store = deps.responses.store;
    const data = await Promise.all(
      listed.map(async ({ id, state }) => {
        const r = await store.get(id);
        return { id, object: 'response', job_state: state, ...(r === undefined ? { status: null } : responseSummary(r)) };
      }),
    );
    return { object: 'list', data };
  });

  admin.post('/responses/:id/cancel', async (request) => {
    const id = (request.params as { id: string }).id;
    const r = deps.responses;
    const current = r === undefined ? undefined : await r.store.get(id);
    if (r === undefined || current === undefined) throw new SwitchyardError(ErrorCode.NotFound, `No such response '${id}'.`);
    if (!current.background) throw new SwitchyardError(ErrorCode.InvalidRequest, 'Only background responses can be cancelled.', { param: 'id' });
    const cancelled = await r.store.transition(id, ['queued', 'in_progress'], { status: 'cancelled' });
    if (cancelled === undefined) {
      const now = await r.store.get(id);
      if (now?.status !== 'cancelled') {
        throw new SwitchyardError(ErrorCode.InvalidRequest, `Cannot cancel a response with status '${now?.status ?? 'deleted'}'.`, { status: 409, param: 'id' });
      }
    }
    await r.jobs?.cancel(id);
    return { id, object: 'response', ...responseSummary(cancelled ?? current), status: 'cancelled' };
  });
}

function responseSummary(r: StoredResponse): Record<string, unknown> {
  return {
    status: r.status,
    model: r.model,
    tenant: r.tenant,
    priority: r.priority,
    node: r.nodeId,
    created_at: new Date(r.createdAt * (r.createdAt < 1e12 ? 1000 : 1)).toISOString(),
    error: r.error,
  };
}
