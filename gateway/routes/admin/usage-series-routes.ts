import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { ErrorCode, SwitchyardError } from '../../../core/errors.js';
import type { UsageGroupBy, UsageStore } from '../../../core/storage/usage-store.js';

const SeriesQuery = Type.Object({
  from: Type.Optional(Type.String({ format: 'date-time' })),
  to: Type.Optional(Type.String({ format: 'date-time' })),
  groupBy: Type.Optional(Type.Union(['tenant', 'key', 'model', 'region', 'node'].map((g) => Type.Literal(g)))),
  bucket: Type.Optional(Type.Integer({ minimum: 60, maximum: 86_400 })),
});

/** A bucket that gives about 60 points over the range, rounded to a whole minute (at least one). */
function defaultBucket(from: Date, to: Date): number {
  return Math.max(60, Math.round((to.getTime() - from.getTime()) / 60_000 / 60) * 60);
}

/**
 * `GET /admin/v1/usage/series` (requests and tokens per group per time bucket, for charts) and
 * `GET /admin/v1/keys/last-used` (each key's latest request within 90 days).
 */
export function usageSeriesRoutes(admin: FastifyInstance, usage: UsageStore): void {
  admin.get('/usage/series', { schema: { querystring: SeriesQuery } }, async (request) => {
    const q = request.query as { from?: string; to?: string; groupBy?: UsageGroupBy; bucket?: number };
    if (usage.series === undefined) throw new SwitchyardError(ErrorCode.InvalidRequest, 'This usage store cannot make series.', { status: 501 });
    const to = q.to === undefined ? new Date() : new Date(q.to);
    const from = q.from === undefined ? new Date(to.getTime() - 24 * 3600_000) : new Date(q.from);
    if (!(from < to)) throw new SwitchyardError(ErrorCode.InvalidRequest, '`from` must be before `to`.', { param: 'from' });
    const bucket = q.bucket ?? defaultBucket(from, to);
    if ((to.getTime() - from.getTime()) / 1000 / bucket > 2000) {
      throw new SwitchyardError(ErrorCode.InvalidRequest, 'That range has more than 2000 buckets; choose a larger bucket.', { param: 'bucket' });
    }
    const groupBy = q.groupBy ?? 'tenant';
    const rows = await usage.series({ from, to, groupBy, bucketSeconds: bucket });
    return {
      object: 'list',
      group_by: groupBy,
      bucket_seconds: bucket,
      from: from.toISOString(),
      to: to.toISOString(),
      data: rows.map((r) => ({
        bucket: r.bucket.toISOString(),
        group: r.group,
        requests: r.requests,
        prompt_tokens: r.promptTokens,
        completion_tokens: r.completionTokens,
        errors: r.errors,
      })),
    };
  });

  admin.get('/keys/last-used', async () => {
    const last = (await usage.lastUsedByKey?.()) ?? new Map<string, Date>();
    return { object: 'list', data: [...last].map(([id, at]) => ({ id, last_used_at: at.toISOString() })) };
  });
}
