import type { FastifyInstance } from 'fastify';
import type { Registry } from '../../../core/metrics.js';
import type { Fleet } from '../../../scheduler/fleet.js';
import type { NodeState } from '../../../scheduler/node-state.js';

export interface FleetViewDeps {
  readonly fleet: Fleet;
  /** This gateway's metrics: the node token counters tokens/s is derived from. */
  readonly registry: Registry | undefined;
  readonly horizonSeconds: number;
  /** Interval between `fleet` events on a stream, ms. */
  readonly streamIntervalMs?: number;
}

/** Output tokens counted per node so far (this gateway's `switchyard_node_generated_tokens_total`). */
async function tokenCounters(registry: Registry | undefined): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const metric = registry?.getSingleMetric('switchyard_node_generated_tokens_total');
  if (metric === undefined) return out;
  for (const v of (await metric.get()).values) {
    const node = v.labels.node;
    if (typeof node === 'string') out.set(node, (out.get(node) ?? 0) + v.value);
  }
  return out;
}

function nodeJson(n: NodeState, now: number, horizonSeconds: number, tokensPerSecond: number | null, staticIds: ReadonlySet<string>): Record<string, unknown> {
  const r = n.report;
  return {
    id: n.id,
    source: staticIds.has(n.id) ? 'static' : 'registered',
    engine: n.spec.engine,
    url: n.spec.baseUrl,
    models: n.spec.models,
    draining: n.draining,
    available: n.isAvailable(now),
    healthy: n.healthy,
    ejected: n.ejectedUntil > now,
    fresh: n.requiresAgent ? n.isFresh(now) : null,
    report_age_ms: r === undefined ? null : Math.max(0, now - r.atMs),
    engine_down: r?.engineDown === true,
    running: r?.running ?? null,
    waiting: r?.waiting ?? null,
    kv_cache_usage: r?.kvCacheUsage ?? null,
    gpu:
      r?.gpu === undefined
        ? null
        : { count: r.gpu.count, utilization: r.gpu.utilization, memory_used_bytes: r.gpu.memoryUsedBytes, memory_total_bytes: r.gpu.memoryTotalBytes },
    inflight: n.inflight,
    reserved: { sequences: n.reservedSequences, tokens: n.reservedTokens },
    capacity: {
      max_sequences: n.spec.maxSequences,
      token_budget: n.tokenBudget(horizonSeconds),
      tokens_per_second: n.tokensPerSecond,
      declared_tokens_per_second: n.spec.tokensPerSecond,
      learned_tokens_per_second: n.learnedTokensPerSecond ?? null,
    },
    tokens_per_second: tokensPerSecond,
  };
}

/** The fleet as this gateway sees it: regions → clusters → nodes, with live load and capacity. */
export function fleetSnapshot(deps: FleetViewDeps, now: number, rates: ReadonlyMap<string, number>): Record<string, unknown> {
  const { fleet } = deps;
  const regions = [...fleet.topology.regions.values()].map((region) => {
    const clusters = new Map<string, Record<string, unknown>[]>();
    for (const n of fleet.nodes.values()) {
      if (n.spec.regionId !== region.id) continue;
      const list = clusters.get(n.spec.clusterId) ?? [];
      list.push(nodeJson(n, now, deps.horizonSeconds, rates.get(n.id) ?? null, fleet.staticIds));
      clusters.set(n.spec.clusterId, list);
    }
    return {
      id: region.id,
      name: region.name,
      residency: region.residency,
      clusters: [...clusters.entries()]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([id, nodes]) => ({ id, nodes: nodes.sort((a, b) => String(a.id).localeCompare(String(b.id))) })),
    };
  });
  return { object: 'fleet', at: new Date(now).toISOString(), regions };
}

/** Tokens/s per node between two counter readings. */
class RateTracker {
  private last: { at: number; counts: Map<string, number> } | undefined;

  constructor(private readonly registry: Registry | undefined) {}

  async next(now: number): Promise<Map<string, number>> {
    const counts = await tokenCounters(this.registry);
    const rates = new Map<string, number>();
    const prev = this.last;
    if (prev !== undefined && now > prev.at) {
      for (const [node, c] of counts) rates.set(node, Math.max(0, (c - (prev.counts.get(node) ?? 0)) / ((now - prev.at) / 1000)));
    }
    this.last = { at: now, counts };
    return rates;
  }
}

/**
 * `GET /admin/v1/fleet` (a snapshot) and `GET /admin/v1/fleet/stream`: server-sent events, one
 * `fleet` event per interval with the whole snapshot, so a page keeps one connection however
 * many nodes it shows. Streams end when the gateway closes.
 */
export function fleetRoutes(admin: FastifyInstance, deps: FleetViewDeps): void {
  const open = new Set<() => void>();
  admin.addHook('preClose', (done) => {
    for (const end of open) end();
    done();
  });

  admin.get('/fleet', async () => fleetSnapshot(deps, Date.now(), new Map()));

  admin.get('/fleet/stream', (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      'x-request-id': request.id,
    });
    const rates = new RateTracker(deps.registry);
    let busy = false;
    const tick = (): void => {
      if (busy) return;
      busy = true;
      const now = Date.now();
      rates
        .next(now)
        .then((r) => {
          if (!res.writableEnded) res.write(`event: fleet\ndata: ${JSON.stringify(fleetSnapshot(deps, now, r))}\n\n`);
        })
        .catch((err: unknown) => request.log.warn({ err }, 'fleet stream tick failed'))
        .finally(() => (busy = false));
    };
    const timer = setInterval(tick, deps.streamIntervalMs ?? 1000);
    const end = (): void => {
      clearInterval(timer);
      open.delete(end);
      if (!res.writableEnded) res.end();
    };
    open.add(end);
    res.on('close', end);
    res.write('retry: 2000\n\n');
    tick();
  });
}
