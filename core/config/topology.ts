import type { EngineKind } from './regions-schema.js';

/** The validated, unit-normalised, frozen view of `regions.yaml` that components receive. */
export interface RegionSpec {
  readonly id: string;
  readonly name: string;
  /** Requests never leave their residency group. */
  readonly residency: string;
  /**
   * Where other regions forward requests to this region's gateways (regions.yaml `gateway`).
   * Set: the region stands alone; other regions reach its nodes only through it.
   */
  readonly gateway: string | undefined;
}

export interface SimSpec {
  readonly ttftMs: number;
  readonly seed: number;
}

export interface NodeSpec {
  readonly id: string;
  readonly regionId: string;
  readonly clusterId: string;
  /** Origin plus optional path prefix, no trailing slash: `/v1/...` is appended. */
  readonly baseUrl: string;
  readonly origin: string;
  readonly pathPrefix: string;
  readonly engine: EngineKind;
  readonly models: readonly string[];
  /** Declared generation capacity, tokens per second over all running sequences. */
  readonly tokensPerSecond: number;
  /** Sequences the engine runs at once; more wait inside the engine. */
  readonly maxSequences: number;
  readonly headers: Readonly<Record<string, string>>;
  /** Present for `engine: sim`: `switchyard start` runs such nodes in-process. */
  readonly sim: SimSpec | undefined;
}

export interface Topology {
  readonly regions: ReadonlyMap<string, RegionSpec>;
  readonly nodes: readonly NodeSpec[];
  /** The region holding the keys' authoritative limit buckets (regions.yaml `limitsHome`). */
  readonly limitsHome: string;
  /** Round trip between two regions in milliseconds; 0 within a region. */
  rttMs(from: string, to: string): number;
}

/** A node's base URL split as the upstream pools need it (origin; path prefix without trailing slash). */
export function nodeEndpoint(url: string): Pick<NodeSpec, 'baseUrl' | 'origin' | 'pathPrefix'> {
  const parsed = new URL(url);
  const pathPrefix = parsed.pathname.replace(/\/+$/, '');
  return { baseUrl: parsed.origin + pathPrefix, origin: parsed.origin, pathPrefix };
}
