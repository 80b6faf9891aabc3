import { Counter, Gauge, type Registry } from 'prom-client';
import { Pool, request, type Dispatcher } from 'undici';
import type { Logger } from '../../core/logger.js';
import type { PeerRegion } from '../../scheduler/fleet.js';
import { ErrorCode, SwitchyardError } from '../../core/errors.js';
import type { StoredResponse } from '../../core/storage/response-store.js';
import type { SliceSource } from '../../core/ratelimit/leased-rate-limiter.js';
import type { KeyLimits } from '../../core/ratelimit/rate-limiter.js';
import type { Slice } from '../../core/ratelimit/redis-rate-limiter.js';
import { undiciSignal, type CancelSignal } from '../upstream/cancel-signal.js';
import { expectedRemoteSeconds, type RegionSummary } from './region-summary.js';

export interface RegionPeersOptions {
  readonly peers: readonly PeerRegion[];
  /** SWITCHYARD_REGION_TOKEN: sent as the bearer of every call to another region's gateway. */
  readonly token: string;
  /** How often each peer's summary is fetched; one older than three of these counts as saturated. */
  readonly intervalMs: number;
  readonly connectTimeoutMs: number;
  /** Longest silence on a forwarded response (first byte, and between chunks). */
  readonly idleTimeoutMs: number;
  readonly log: Logger;
  readonly registry: Registry;
  readonly now?: () => number;
}

/** A standalone neighbour region as this gateway knows it: its pool and its latest summary. */
export interface Peer {
  readonly spec: PeerRegion;
  readonly pool: Pool;
  summary: RegionSummary | undefined;
  /** This gateway's clock when the summary arrived (peers' clocks are not compared with ours). */
  receivedAt: number;
  up: boolean;
  /** A summary request is out: the next tick skips this peer (one connection, no pile-up). */
  polling: boolean;
}

export interface SpillChoice {
  readonly peer: Peer;
  /** Seconds the request is expected to take there, the round trip included. */
  readonly seconds: number;
}

/** What a forwarded request carries besides its body: who asked, and what was already decided. */
export interface ForwardedCall {
  readonly path: string;
  readonly body: Buffer | string;
  readonly requestId: string;
  readonly originRegion: string;
  readonly tenant: string;
  readonly weight: number;
  readonly keyId: string | undefined;
  readonly priority: string;
  /** Milliseconds the request may still wait for capacity there. */
  readonly remainingMs: number;
  readonly affinityKey: string | undefined;
  readonly signal: CancelSignal;
}

/**
 * The other regions of this gateway's residency group that stand alone (regions.yaml `gateway`).
 * In the background each one's capacity summary is fetched about once a second, so that deciding
 * whether to spill a request costs no call: the request goes out only once, forwarded to the
 * chosen region's gateway, which admits it into its own ledger and queue. A peer whose summary is
 * stale (three intervals) or whose gateway refused a connection counts as saturated until a fresh
 * summary arrives.
 */
export class RegionPeers {
  private readonly peers: Peer[];
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly upGauge: Gauge<'region'>;
  private readonly forwarded: Counter<'region' | 'outcome'>;

  constructor(private readonly opts: RegionPeersOptions) {
    this.now = opts.now ?? Date.now;
    this.peers = opts.peers.map((spec) => ({
      spec,
      // Few connections suffice: summaries are one small GET a second, and forwarded streams
      // are long-lived but rare (a spill is the exception, not the path).
      pool: new Pool(spec.gateway, { connections: 64, connectTimeout: opts.connectTimeoutMs, keepAliveTimeout: 30_000 }),
      summary: undefined,
      receivedAt: 0,
      up: false,
      polling: false,
    }));
    this.upGauge = new Gauge({
      name: 'switchyard_region_peer_up',
      help: "1 while a neighbour region's capacity summary is fresh (this gateway may spill to it), else 0.",
      labelNames: ['region'],
      registers: [opts.registry],
    });
    for (const p of this.peers) this.upGauge.set({ region: p.spec.region.id }, 0);
    this.forwarded = new Counter({
      name: 'switchyard_region_forwarded_total',
      help: 'Requests this gateway spilled to a neighbour region, by that region and outcome (served there; unreachable or full: served here instead).',
      labelNames: ['region', 'outcome'],
      registers: [opts.registry],
    });
  }

  get size(): number {
    return this.peers.length;
  }

  start(): void {
    if (this.peers.length === 0 || this.timer !== undefined) return;
    const poll = (): void => {
      for (const peer of this.peers) void this.fetchSummary(peer);
    };
    poll();
    this.timer = setInterval(poll, this.opts.intervalMs);
    this.timer.unref();
  }

  private async fetchSummary(peer: Peer): Promise<void> {
    if (peer.polling) return;
    peer.polling = true;
    try {
      const res = await request(`${peer.spec.gateway}/internal/v1/summary`, {
        dispatcher: peer.pool,
        headers: { authorization: `Bearer ${this.opts.token}` },
        headersTimeout: this.opts.intervalMs * 2,
        bodyTimeout: this.opts.intervalMs * 2,
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new Error(`HTTP ${res.statusCode}`);
      }
      peer.summary = (await res.body.json()) as RegionSummary;
      peer.receivedAt = this.now();
      this.setUp(peer, true, undefined);
    } catch (err) {
      // Kept until stale: one late summary is not an outage.
      if (this.now() - peer.receivedAt > 3 * this.opts.intervalMs) this.setUp(peer, false, (err as Error).message);
    } finally {
      peer.polling = false;
    }
  }

  private setUp(peer: Peer, up: boolean, reason: string | undefined): void {
    if (peer.up === up) return;
    peer.up = up;
    this.upGauge.set({ region: peer.spec.region.id }, up ? 1 : 0);
    if (up) this.opts.log.info({ region: peer.spec.region.id }, 'neighbour region reachable: spill possible');
    else this.opts.log.warn({ region: peer.spec.region.id, err: reason }, 'neighbour region unreachable: no spill to it');
  }

  private fresh(peer: Peer, now: number): RegionSummary | undefined {
    return peer.up && now - peer.receivedAt <= 3 * this.opts.intervalMs ? peer.summary : undefined;
  }

  /** Whether a reachable neighbour region has a node serving `model` (it may be busy). */
  serves(model: string): boolean {
    const now = this.now();
    return this.peers.some((p) => (this.fresh(p, now)?.models[model]?.nodes ?? 0) > 0);
  }

  /**
   * The neighbour where a request of `cost` tokens is expected to finish soonest, distance
   * included, if that is sooner than `localSeconds` (Infinity: it would wait here). Local
   * arithmetic on the summaries; a region without headroom for the model is never chosen.
   */
  choose(model: string, cost: number, localSeconds: number): SpillChoice | undefined {
    const now = this.now();
    let best: SpillChoice | undefined;
    for (const peer of this.peers) {
      const m = this.fresh(peer, now)?.models[model];
      if (m === undefined || m.headroomSequences <= 0) continue;
      const seconds = expectedRemoteSeconds(m, peer.spec.rttMs, cost);
      if (seconds < localSeconds && (best === undefined || seconds < best.seconds)) best = { peer, seconds };
    }
    return best;
  }

  /** The standalone neighbour region with this id, if it is one. */
  peer(regionId: string): Peer | undefined {
    return this.peers.find((p) => p.spec.region.id === regionId);
  }

  /** A response held in the peer's region (hot in its Redis), by the region token; undefined if it has none. */
  async fetchResponse(peer: Peer, id: string): Promise<StoredResponse | undefined> {
    const res = await request(`${peer.spec.gateway}/internal/v1/responses/${encodeURIComponent(id)}`, {
      dispatcher: peer.pool,
      headers: { authorization: `Bearer ${this.opts.token}` },
      headersTimeout: this.opts.idleTimeoutMs,
      bodyTimeout: this.opts.idleTimeoutMs,
    });
    if (res.statusCode === 404) {
      await res.body.dump();
      return undefined;
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new SwitchyardError(ErrorCode.UpstreamUnavailable, `Region ${peer.spec.region.id} could not be asked for response '${id}' (HTTP ${res.statusCode}).`);
    }
    return (await res.body.json()) as StoredResponse;
  }

  /**
   * A client's own call relayed to the peer's public API as it came (its API key authenticates
   * it there): how a gateway serves a response id that names another region.
   */
  relay(peer: Peer, method: 'GET' | 'POST' | 'DELETE', path: string, headers: Record<string, string>, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    return request(`${peer.spec.gateway}${path}`, { dispatcher: peer.pool, method, headers, signal, headersTimeout: this.opts.idleTimeoutMs, bodyTimeout: this.opts.idleTimeoutMs });
  }

  /** The key budget's slices, leased from `home`'s gateway (this region is not the limits home). */
  slicesFrom(home: Peer, ownRegion: string): SliceSource {
    const post = async (path: string, body: Record<string, unknown>): Promise<unknown> => {
      const res = await request(`${home.spec.gateway}/internal/v1/limits/${path}`, {
        dispatcher: home.pool,
        method: 'POST',
        headers: { authorization: `Bearer ${this.opts.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        headersTimeout: 2000,
        bodyTimeout: 2000,
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new Error(`limits home ${home.spec.region.id} answered HTTP ${res.statusCode}`);
      }
      return res.body.json();
    };
    const call = (path: string, keyId: string, limits: KeyLimits, slice: Slice): Promise<unknown> =>
      post(path, { keyId, limits: { requestsPerMinute: limits.requestsPerMinute, tokensPerMinute: limits.tokensPerMinute, maxConcurrent: limits.maxConcurrent }, slice, region: ownRegion });
    return {
      grant: async (keyId, limits, want) => (await call('grant', keyId, limits, want)) as Slice,
      giveBack: async (keyId, limits, slice) => {
        await call('give-back', keyId, limits, slice);
      },
      renewSlots: async (keyId, names) => ((await post('renew-slots', { keyId, slots: names })) as { gone: string[] }).gone,
    };
  }

  /** Counts a forwarding outcome: served there, unreachable, or full (served here instead). */
  counted(peer: Peer, outcome: 'served' | 'unreachable' | 'full'): void {
    this.forwarded.inc({ region: peer.spec.region.id, outcome });
  }

  /** A forward failed to connect or the region was full: no more spill to it until a fresh summary. */
  markSaturated(peer: Peer, reason: string): void {
    peer.receivedAt = 0;
    this.setUp(peer, false, reason);
  }

  /** Sends the request to the peer's gateway; the headers say who asked and what was decided. */
  forward(peer: Peer, call: ForwardedCall): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      authorization: `Bearer ${this.opts.token}`,
      'x-request-id': call.requestId,
      'x-switchyard-forwarded-from': call.originRegion,
      'x-switchyard-tenant': call.tenant,
      'x-switchyard-tenant-weight': String(call.weight),
      'x-switchyard-priority': call.priority,
      'x-switchyard-queue-timeout-ms': String(Math.max(0, Math.floor(call.remainingMs))),
    };
    if (call.keyId !== undefined) headers['x-switchyard-key-id'] = call.keyId;
    if (call.affinityKey !== undefined) headers['x-session-id'] = call.affinityKey;
    return request(`${peer.spec.gateway}${call.path}`, {
      dispatcher: peer.pool,
      method: 'POST',
      headers,
      body: call.body,
      signal: undiciSignal(call.signal),
      // The remote gateway may queue the request up to its deadline before answering.
      headersTimeout: call.remainingMs + this.opts.idleTimeoutMs,
      bodyTimeout: this.opts.idleTimeoutMs,
    });
  }

  /** Stops fetching summaries; forwarded requests in flight go on. */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Waits for forwarded requests in flight, then closes the connections. */
  async close(): Promise<void> {
    this.stop();
    await Promise.all(this.peers.map((p) => p.pool.close().catch(() => p.pool.destroy())));
  }

  /** Cuts forwarded requests in flight (their clients get an error event): the grace period is over. */
  async destroy(): Promise<void> {
    this.stop();
    await Promise.all(this.peers.map((p) => p.pool.destroy()));
  }
}
