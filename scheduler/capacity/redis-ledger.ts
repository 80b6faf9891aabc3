import type { RedisClient } from '../../core/redis-connection.js';
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
 * ARGV: lease id, TTL ms, cost, candidate count, then per candidate: node id, max sequences,
 * token budget. Returns {granted index or -1, s1, t1, s2, t2, …}.
 */
const RESERVE = `${PURGE}
local cost = tonumber(ARGV[3])
local out = {-1}
for i = 0, tonumber(ARGV[4]) - 1 do
  local id = ARGV[5 + i * 3]
  local s = tonumber(redis.call('HGET', KEYS[1], 's:' .. id) or '0')
  local tk = tonumber(redis.call('HGET', KEYS[1], 't:' .. id) or '0')
  if out[1] < 0 and s < tonumber(ARGV[6 + i * 3]) and (s == 0 or tk + cost <= tonumber(ARGV[7 + i * 3])) then
    out[1] = i
    s = redis.call('HINCRBY', KEYS[1], 's:' .. id, 1)
    tk = redis.call('HINCRBY', KEYS[1], 't:' .. id, cost)
    redis.call('HSET', KEYS[3], ARGV[1], cost .. '|' .. id)
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
  end
  out[#out + 1] = s
  out[#out + 1] = tk
end
return out
`;

/** ARGV: lease id. Returns {node, sequences, tokens} after, or {} when the lease was gone. */
const RELEASE = `${PURGE}
return drop(ARGV[1]) or {}
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
  switchyardLedgerRelease(k1: string, k2: string, k3: string, leaseId: string): Promise<[string, number, number] | []>;
  switchyardLedgerRenew(k1: string, k2: string, k3: string, ...args: (string | number)[]): Promise<number>;
  switchyardLedgerSnapshot(k1: string, k2: string, k3: string): Promise<string[]>;
};

/** The ledger every gateway replica shares: one EVALSHA per reserve, release, renew or snapshot. */
export class RedisLedger implements CapacityLedger {
  private readonly redis: LedgerRedis;
  private readonly keys: [string, string, string];
  readonly leaseTtlMs: number;

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

  async reserve(leaseId: string, cost: number, candidates: readonly LedgerNode[]): Promise<ReserveOutcome> {
    const args: (string | number)[] = [leaseId, this.leaseTtlMs, Math.ceil(cost), candidates.length];
    for (const c of candidates) args.push(c.id, c.maxSequences, Math.floor(c.tokenBudget));
    const res = await this.redis.switchyardLedgerReserve(...this.keys, ...args);
    const sequences: number[] = [];
    const tokens: number[] = [];
    for (let i = 1; i < res.length; i += 2) {
      sequences.push(res[i] as number);
      tokens.push(res[i + 1] as number);
    }
    return { granted: res[0] as number, sequences, tokens };
  }

  async release(leaseId: string): Promise<NodeTotals | undefined> {
    const res = await this.redis.switchyardLedgerRelease(...this.keys, leaseId);
    if (res.length === 0) return undefined;
    const [nodeId, sequences, tokens] = res as [string, number, number];
    return { nodeId, sequences, tokens };
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
