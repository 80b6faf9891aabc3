/** The admin API's objects, as the console reads them. */
export interface FleetNode {
  readonly id: string;
  readonly source: 'static' | 'registered';
  readonly engine: string;
  readonly url: string;
  readonly models: string[];
  readonly draining: boolean;
  readonly available: boolean;
  readonly healthy: boolean;
  readonly ejected: boolean;
  readonly fresh: boolean | null;
  readonly report_age_ms: number | null;
  readonly engine_down: boolean;
  readonly running: number | null;
  readonly waiting: number | null;
  readonly kv_cache_usage: number | null;
  /** The node's GPUs together, as its agent reports them; null without an agent or GPUs. */
  readonly gpu: { count: number; utilization: number | null; memory_used_bytes: number | null; memory_total_bytes: number | null } | null;
  readonly inflight: number;
  readonly reserved: { readonly sequences: number; readonly tokens: number };
  readonly capacity: { readonly max_sequences: number; readonly token_budget: number; readonly tokens_per_second: number };
  readonly tokens_per_second: number | null;
}

export interface Fleet {
  readonly at: string;
  readonly regions: Array<{ id: string; name: string; clusters: Array<{ id: string; nodes: FleetNode[] }> }>;
}

export interface ApiKey {
  readonly id: string;
  readonly tenant: string;
  readonly name: string;
  readonly key_prefix: string;
  readonly limits: { requestsPerMinute: number; tokensPerMinute: number; maxConcurrent: number };
  readonly models: string[];
  readonly priority: string;
  readonly created_at: string;
  readonly revoked_at: string | null;
}

export interface Tenant {
  readonly id: string;
  readonly name?: string | null;
  readonly weight?: number;
}

export interface UsageRow {
  readonly group: string | null;
  readonly requests: number;
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly errors: number;
}

export interface UsagePoint extends UsageRow {
  readonly bucket: string;
}
