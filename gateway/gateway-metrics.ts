import { Counter, Gauge, type Registry } from 'prom-client';
import { HotCounter, HotHistogram } from '../core/hot-metrics.js';
import type { Fleet } from '../scheduler/fleet.js';
import type { NodeState } from '../scheduler/node-state.js';

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

interface RouteChildren {
  readonly byClass: Array<{ inc(): void }>;
  readonly duration: { observe(v: number): void };
  readonly overhead: { observe(v: number): void };
}

/** A two-level cache of label children: no key string is built per request. */
function nested<T>(cache: Map<string, Map<string, T>>, a: string, b: string, make: () => T): T {
  let inner = cache.get(a);
  if (inner === undefined) {
    inner = new Map();
    cache.set(a, inner);
  }
  let value = inner.get(b);
  if (value === undefined) {
    value = make();
    inner.set(b, value);
  }
  return value;
}

function statusClass(status: number): number {
  return Math.min(4, Math.max(0, Math.floor(status / 100) - 1));
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120];

/**
 * The gateway's metrics. Labels are bounded: route (a fixed set), status class, model and node
 * (from configuration), reason (a fixed set). Never keys, tenants' ids or request ids.
 */
export class GatewayMetrics {
  // Per-request metrics: hot-metrics children (plain numbers, read at scrape time).
  readonly requests: HotCounter<'route' | 'status_class'>;
  readonly duration: HotHistogram<'route'>;
  readonly ttft: HotHistogram<'model' | 'region'>;
  readonly timePerOutputToken: HotHistogram<'model' | 'region'>;
  readonly overhead: HotHistogram<'route'>;
  readonly modelRequests: HotCounter<'model' | 'region' | 'status_class'>;
  readonly tokens: HotCounter<'model' | 'region' | 'direction'>;
  readonly nodeTokens: HotCounter<'node' | 'region'>;
  readonly upstreamErrors: Counter<'node' | 'reason'>;
  /** Streams whose node failed after the first byte: continued on another node, or ended. */
  readonly failovers: Counter<'reason' | 'result'>;
  readonly retries: Counter<'reason'>;
  readonly inflight: Gauge<'node'>;
  readonly nodeHealthy: Gauge<'node' | 'region'>;

  /** Label children per route, resolved once: the per-request path does no label hashing. */
  private readonly routeChildren = new Map<string, RouteChildren>();

  // Models are validated against the configured fleet and nodes and regions come from it: bounded.
  private readonly tokenChildren = new Map<string, Map<string, readonly [{ inc(v: number): void }, { inc(v: number): void }, { inc(v: number): void }]>>();
  private readonly modelChildren = new Map<string, Map<string, Array<{ inc(): void }>>>();
  private readonly perTokenChildren = new Map<string, Map<string, { observe(v: number): void }>>();
  private readonly ttftChildren = new Map<string, Map<string, { observe(v: number): void }>>();

  /** Streaming: time from request received to the first event sent, in seconds. */
  observeTimeToFirstToken(model: string, region: string, seconds: number): void {
    nested(this.ttftChildren, model, region, () => this.ttft.labels(model, region)).observe(seconds);
  }

  /** Adds the tokens an engine reported, by model and the serving node; children resolved once. */
  countTokens(model: string, node: NodeState, prompt: number, completion: number): void {
    const region = node.spec.regionId;
    const children = nested(this.tokenChildren, model, node.id, () => [
      this.tokens.labels(model, region, 'prompt'),
      this.tokens.labels(model, region, 'completion'),
      this.nodeTokens.labels(node.id, region),
    ] as const);
    children[0].inc(prompt);
    children[1].inc(completion);
    children[2].inc(completion);
  }

  /** Counts a finished inference request by model, the serving region and status class. */
  countModelRequest(model: string, region: string, status: number): void {
    const children = nested(this.modelChildren, model, region, () => STATUS_CLASSES.map((c) => this.modelRequests.labels(model, region, c)));
    children[statusClass(status)]?.inc();
  }

  /** Streaming: the mean time between output tokens after the first, in seconds. */
  observeTimePerOutputToken(model: string, region: string, seconds: number): void {
    nested(this.perTokenChildren, model, region, () => this.timePerOutputToken.labels(model, region)).observe(seconds);
  }

  /** Time the request spent in the gateway itself, in seconds. */
  observeOverhead(route: string, seconds: number): void {
    this.route(route).overhead.observe(seconds);
  }

  private route(route: string): RouteChildren {
    let children = this.routeChildren.get(route);
    if (children === undefined) {
      children = {
        byClass: STATUS_CLASSES.map((c) => this.requests.labels(route, c)),
        duration: this.duration.labels(route),
        overhead: this.overhead.labels(route),
      };
      // Routes are Fastify's route patterns (a fixed set), so this map stays small.
      this.routeChildren.set(route, children);
    }
    return children;
  }

  /** Counts one answered request (and its duration) without allocating label objects. */
  recordResponse(route: string, status: number, elapsedMs: number): void {
    const children = this.route(route);
    children.byClass[statusClass(status)]?.inc();
    children.duration.observe(elapsedMs / 1000);
  }

  constructor(registry: Registry, fleet: Fleet) {
    const registers = [registry];
    this.requests = new HotCounter('switchyard_http_requests_total', 'Requests answered, by route and status class (2xx, 4xx, 5xx).', ['route', 'status_class'], registry);
    this.duration = new HotHistogram('switchyard_http_request_duration_seconds', 'Time from request received to response ended (streams included), by route.', ['route'], LATENCY_BUCKETS, registry);
    this.ttft = new HotHistogram('switchyard_time_to_first_token_seconds', 'Streaming requests: time from request received to the first event sent to the client.', ['model', 'region'], LATENCY_BUCKETS, registry);
    this.timePerOutputToken = new HotHistogram('switchyard_time_per_output_token_seconds', 'Streaming requests: mean time between output tokens after the first (inter-token latency), by model and serving region.', ['model', 'region'], [0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1], registry);
    this.overhead = new HotHistogram('switchyard_gateway_overhead_seconds', 'Time a request spent in the gateway itself: its whole duration minus waiting for capacity and for the upstream (headers and body).', ['route'], [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1], registry);
    this.modelRequests = new HotCounter('switchyard_model_requests_total', 'Inference requests answered, by model, the region that served them (the gateway\'s own when none did) and status class.', ['model', 'region', 'status_class'], registry);
    this.tokens = new HotCounter('switchyard_tokens_total', 'Tokens reported by the engines, by model, serving region and direction (prompt, completion).', ['model', 'region', 'direction'], registry);
    this.nodeTokens = new HotCounter('switchyard_node_generated_tokens_total', 'Output tokens the engines reported, by node: rate() is the tokens/s each node delivers through this gateway.', ['node', 'region'], registry);
    this.upstreamErrors = new Counter({
      name: 'switchyard_upstream_errors_total',
      help: 'Failed upstream attempts, by node and reason (connect_refused, connect_timeout, reset, first_byte_timeout, idle_timeout, http_429, http_5xx, dropped).',
      labelNames: ['node', 'reason'],
      registers,
    });
    this.failovers = new Counter({
      name: 'switchyard_stream_failovers_total',
      help: 'Streams whose node failed after the first byte, by the failure (dropped, idle_timeout, node_down, truncated, …) and result (continued on another node, or ended with an error event).',
      labelNames: ['reason', 'result'],
      registers,
    });
    this.retries = new Counter({
      name: 'switchyard_upstream_retries_total',
      help: 'Attempts retried on another node before the first byte, by the reason of the failure.',
      labelNames: ['reason'],
      registers,
    });
    // Read at scrape time: registered nodes come and go.
    const nodes = { values: () => fleet.nodes.values() };
    this.inflight = new Gauge({
      name: 'switchyard_upstream_inflight_requests',
      help: 'Requests this gateway has open on each node.',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset();
        for (const n of nodes.values()) this.set({ node: n.id }, n.inflight);
      },
    });
    const now = Date.now;
    this.nodeHealthy = new Gauge({
      name: 'switchyard_node_healthy',
      help: '1 when the node passes health checks and is not ejected by the circuit breaker, else 0.',
      labelNames: ['node', 'region'],
      registers,
      collect() {
        const t = now();
        this.reset();
        for (const n of nodes.values()) this.set({ node: n.id, region: n.spec.regionId }, n.isAvailable(t) ? 1 : 0);
      },
    });
  }
}
