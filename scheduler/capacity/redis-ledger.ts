import { socketOf, type RedisClient } from '../../core/redis-connection.js';
import { TickBatcher } from '../../core/tick-batcher.js';
import { DEFAULT_LEDGER_LEASE_TTL_MS, type CapacityLedger, type HeldLease, type LedgerNode, type NodeTotals, type ReserveOutcome } from './ledger.js';

/*
 * Three keys under one hash tag (one Redis Cluster slot), so each script is atomic:
 *   KEYS[1] totals  hash   s:<node> reserved sequences, t:<node> reserved tokens
 *   KEYS[2] expiry  zset   lease id scored by its expiry (ms, Redis's clock)
 *   KEYS[3] leases  hash   lease id -> "<tokens>|<node>"
 * Every script first returns expired leases to their nodes, so a dead gateway's capacity comes
 * back on the next call of any gateway; time is Redis's own, so gateways' clocks do not matter.
 */
const PURGE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function drop(id)
  local v = redis.call('HGET', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
  if not v then return nil end
  redis.call('HDEL', KEYS[3], id)
  local sep = string.find(v, '|', 1, true)
  local node = string.sub(v, sep + 1)
  local s = redis.call('HINCRBY', KEYS[1], 's:' .. node, -1)
  local tk = redis.call('HINCRBY', KEYS[1], 't:' .. node, -tonumber(string.sub(v, 1, sep - 1)))
  return {node, s, tk}
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 256)) do drop(id) end
`;

/**
 * The reservations of one event-loop turn, in order. ARGV: TTL ms, then per reservation: lease id,
 * cost, candidate count, then per candidate: node id, max sequences, token budget. Returns per
 * reservation {granted index or -1, s1, t1, s2, t2, …}.
 */
const RESERVE = `${PURGE}
local expires = now + tonumber(ARGV[1])
local out = {}
local a = 2
while a <= #ARGV do
  local lease = ARGV[a]
  local cost = tonumber(ARGV[a + 1])
  local n = tonumber(ARGV[a + 2])
  local at = #out + 1
  out[at] = -1
  for i = 0, n - 1 do
    local c = a + 3 + i * 3
    local id = ARGV[c]
    local s = tonumber(redis.call('HGET', KEYS[1], 's:' .. id) or '0')
    local tk = tonumber(redis.call('HGET', KEYS[1], 't:' .. id) or '0')
    if out[at] < 0 and s < tonumber(ARGV[c + 1]) and (s == 0 or tk + cost <= tonumber(ARGV[c + 2])) then
      out[at] = i
      s = redis.call('HINCRBY', KEYS[1], 's:' .. id, 1)
      tk = redis.call('HINCRBY', KEYS[1], 't:' .. id, cost)
      redis.call('HSET', KEYS[3], lease, cost .. '|' .. id)
      redis.call('ZADD', KEYS[2], expires, lease)
    end
    out[#out + 1] = s
    out[#out + 1] = tk
  end
  a = a + 3 + n * 3
end
return out
`;

/**
 * The releases of one event-loop turn. ARGV: lease ids. Returns per lease {node, sequences,
 * tokens} after it, or {'', 0, 0} when the lease was gone.
 */
const RELEASE = `${PURGE}
local out = {}
for i = 1, #ARGV do
  local r = drop(ARGV[i]) or {'', 0, 0}
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
  out[#out + 1] = r[3]
end
return out
`;

/**
 * ARGV: TTL ms, then per lease: id, node, cost. Extends each lease; one the ledger lost (a Redis
 * that restarted empty, an expiry while its gateway was cut off) is taken again on its node.
 * Returns the number taken again.
 */
const RENEW = `${PURGE}
local restored = 0
local expires = now + tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  if not redis.call('ZSCORE', KEYS[2], id) then
    local node = ARGV[i + 1]
    local cost = tonumber(ARGV[i + 2])
    redis.call('HINCRBY', KEYS[1], 's:' .. node, 1)
    redis.call('HINCRBY', KEYS[1], 't:' .. node, cost)
    redis.call('HSET', KEYS[3], id, cost .. '|' .. node)
    restored = restored + 1
  end
  redis.call('ZADD', KEYS[2], expires, id)
end
return restored
`;

const SNAPSHOT = `${PURGE}
return redis.call('HGETALL', KEYS[1])
`;

type LedgerRedis = RedisClient & {
  switchyardLedgerReserve(k1: string, k2: string, k3: string, ...args: (string | number)[]): Promise<number[]>;
  switchyardLedgerRelease(k1: string, k2: string, k3: string, ...leaseIds: string[]): Promise<(string | number)[]>;
  switchyardLedgerRenew(k1: string, k2: string, k3: string, ...args: (string | number)[]): Promise<number>;
  switchyardLedgerSnapshot(k1: string, k2: string, k3: string): Promise<string[]>;
};

interface Reservation {
  readonly leaseId: string;
  readonly cost: number;
  readonly candidates: readonly LedgerNode[];
}

/**
 * The ledger every gateway replica shares. The reservations of one event-loop turn go to Redis as
 * one EVALSHA, and so do its releases; renewals and snapshots are one each.
 */
export class RedisLedger implements CapacityLedger {
  private readonly redis: LedgerRedis;
  private readonly keys: [string, string, string];
  readonly leaseTtlMs: number;
  private readonly reservations = new TickBatcher<Reservation, ReserveOutcome>((_, items) => this.reserveMany(items), 256, () => socketOf(this.redis));
  private readonly releases = new TickBatcher<string, NodeTotals | undefined>((_, ids) => this.releaseMany(ids), 256, () => socketOf(this.redis));

  constructor(opts: { redis: RedisClient; keyPrefix: string; leaseTtlMs?: number }) {
    this.redis = opts.redis as LedgerRedis;
    this.leaseTtlMs = opts.leaseTtlMs ?? DEFAULT_LEDGER_LEASE_TTL_MS;
    const tag = `${opts.keyPrefix}capacity:{ledger}`;
    this.keys = [`${tag}:totals`, `${tag}:expiry`, `${tag}:leases`];
    if (typeof (this.redis as Partial<LedgerRedis>).switchyardLedgerReserve !== 'function') {
      this.redis.defineCommand('switchyardLedgerReserve', { numberOfKeys: 3, lua: RESERVE });
      this.redis.defineCommand('switchyardLedgerRelease', { numberOfKeys: 3, lua: RELEASE });
      this.redis.defineCommand('switchyardLedgerRenew', { numberOfKeys: 3, lua: RENEW });
      this.redis.defineCommand('switchyardLedgerSnapshot', { numberOfKeys: 3, lua: SNAPSHOT });
    }
  }

  reserve(leaseId: string, cost: number, candidates: readonly LedgerNode[]): Promise<ReserveOutcome> {
    return this.reservations.add('', { leaseId, cost, candidates });
  }

  release(leaseId: string): Promise<NodeTotals | undefined> {
    return this.releases.add('', leaseId);
  }

  private async reserveMany(items: readonly Reservation[]): Promise<ReserveOutcome[]> {
    const args: (string | number)[] = [this.leaseTtlMs];
    for (const r of items) {
      args.push(r.leaseId, Math.ceil(r.cost), r.candidates.length);
      for (const c of r.candidates) args.push(c.id, c.maxSequences, Math.floor(c.tokenBudget));
    }
    const res = await this.redis.switchyardLedgerReserve(...this.keys, ...args);
    const out: ReserveOutcome[] = [];
    let o = 0;
    for (const r of items) {
      const granted = res[o++] as number;
      const sequences: number[] = [];
      const tokens: number[] = [];
      for (let i = 0; i < r.candidates.length; i++) {
        sequences.push(res[o++] as number);
        tokens.push(res[o++] as number);
      }
      out.push({ granted, sequences, tokens });
    }
    return out;
  }

  private async releaseMany(ids: readonly string[]): Promise<(NodeTotals | undefined)[]> {
    const res = await this.redis.switchyardLedgerRelease(...this.keys, ...ids);
    const out: (NodeTotals | undefined)[] = [];
    for (let o = 0; o < res.length; o += 3) {
      const nodeId = res[o] as string;
      out.push(nodeId === '' ? undefined : { nodeId, sequences: res[o + 1] as number, tokens: res[o + 2] as number });
    }
    return out;
  }

  async renew(leases: readonly HeldLease[]): Promise<number> {
    // Bounded argument lists: a gateway with many open requests renews in chunks.
    let restored = 0;
    for (let i = 0; i < leases.length; i += 1000) {
      const args: (string | number)[] = [this.leaseTtlMs];
      for (const l of leases.slice(i, i + 1000)) args.push(l.id, l.nodeId, Math.ceil(l.cost));
      restored += await this.redis.switchyardLedgerRenew(...this.keys, ...args);
    }
    return restored;
  }

  async snapshot(): Promise<NodeTotals[]> {
    const flat = await this.redis.switchyardLedgerSnapshot(...this.keys);
    const byNode = new Map<string, { sequences: number; tokens: number }>();
    for (let i = 0; i < flat.length; i += 2) {
      const field = flat[i] as string;
      const nodeId = field.slice(2);
      const t = byNode.get(nodeId) ?? { sequences: 0, tokens: 0 };
      if (field.startsWith('s:')) t.sequences = Number(flat[i + 1]);
      else t.tokens = Number(flat[i + 1]);
      byNode.set(nodeId, t);
    }
    return [...byNode].map(([nodeId, t]) => ({ nodeId, ...t }));
  }

  close(): Promise<void> {
    // The Redis connection belongs to the caller.
    return Promise.resolve();
  }
}
