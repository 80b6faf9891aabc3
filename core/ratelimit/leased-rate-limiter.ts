import { randomBytes } from 'node:crypto';
import { socketOf, type RedisClient } from '../redis-connection.js';
import { TickBatcher } from '../tick-batcher.js';
import type { Logger } from '../logger.js';
import { DEFAULT_LEASE_TTL_MS, type AdmitResult, type KeyLimits, type LimitReason, type RateLimiter } from './rate-limiter.js';
import { RedisRateLimiter, SLOT_TTL_MS, type Slice } from './redis-rate-limiter.js';

/** Where a region's slices come from: the limits home region's buckets (over its gateway). */
export interface SliceSource {
  /** Up to `want` of the key's budget; `want.slots` a count, the answer's slots their names. */
  grant(keyId: string, limits: KeyLimits, want: Slice): Promise<Slice>;
  giveBack(keyId: string, limits: KeyLimits, slice: Slice): Promise<void>;
  /** Keeps leased slots alive at the home; returns those that had expired already. */
  renewSlots(keyId: string, names: readonly string[]): Promise<readonly string[]>;
}

export interface LeasedRateLimiterOptions {
  /** This region's Redis: the slices, shared by the region's gateways. */
  readonly redis: RedisClient;
  readonly keyPrefix: string;
  readonly source: SliceSource;
  readonly log: Logger;
  /** A lease asks for this share of the key's per-minute limits. */
  readonly leaseShare?: number;
  /** Below this share of the limits left in the slice, the next lease is fetched in the background. */
  readonly lowShare?: number;
  /** A slice untouched this long goes back to the home region. */
  readonly idleReturnMs?: number;
  readonly leaseTtlMs?: number;
  readonly now?: () => number;
}

/*
 * slice admit: the admissions of one key that arrived in one event-loop turn, in order
 * KEYS[1] slice hash (r: requests, t: tokens, s: free leased concurrency slots, o: 1 while the
 *         region's one overdraft is out, at: last use ms)
 * KEYS[2] concurrency leases of this region's requests (sorted set by expiry)
 * ARGV[1] requests/min  ARGV[2] tokens/min  ARGV[3] max concurrent  ARGV[4] lease TTL ms
 * then per admission: cost, lease id
 * Returns per admission {allowed, reason 0|1 requests|2 tokens|3 concurrency, requests left,
 *   tokens left, slots left}
 */
const ADMIT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local maxc = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local st = redis.call('HMGET', KEYS[1], 'r', 't', 'o', 's')
local r = tonumber(st[1]) or 0
local tok = tonumber(st[2]) or 0
local o = tonumber(st[3]) or 0
-- A request lease that expired (its gateway died) gives its slot back to the slice.
local slots = (tonumber(st[4]) or 0) + redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local leased = false
local out = {}
for i = 5, #ARGV, 2 do
  local cost = tonumber(ARGV[i])
  local reason = 0
  local short = 0
  if tpm > 0 and cost > tpm then
    reason = 2
  elseif rpm > 0 and r < 1 then
    short = 1
  elseif tpm > 0 and tok < cost then
    short = 2
  elseif maxc > 0 and slots < 1 then
    short = 3
  end
  if short > 0 then
    -- One request per region may run ahead of its slice: it is what lets a request pass while the
    -- first lease is on its way, and it is paid back from the next lease before another can.
    if o == 0 then o = 1 else reason = short end
  end
  if reason == 0 then
    if rpm > 0 then r = r - 1 end
    if tpm > 0 then tok = tok - cost end
    if maxc > 0 then
      slots = slots - 1
      redis.call('ZADD', KEYS[2], now + ttl, ARGV[i + 1])
      leased = true
    end
  end
  out[#out + 1] = reason == 0 and 1 or 0
  out[#out + 1] = reason
  out[#out + 1] = math.floor(r)
  out[#out + 1] = math.floor(tok)
  out[#out + 1] = slots
end
if leased then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('HSET', KEYS[1], 'r', tostring(r), 't', tostring(tok), 'o', o, 's', slots, 'at', now)
redis.call('PEXPIRE', KEYS[1], 600000)
return out
`;

/*
 * slice add: a lease arrived
 * KEYS[1] slice hash  KEYS[2] slot names held  ARGV[1] requests  ARGV[2] tokens  ARGV[3…] slot names
 * The overdraft is free again once the slice is out of debt.
 */
const ADD = `
local st = redis.call('HMGET', KEYS[1], 'r', 't', 'o', 's')
local r = (tonumber(st[1]) or 0) + tonumber(ARGV[1])
local tok = (tonumber(st[2]) or 0) + tonumber(ARGV[2])
local o = tonumber(st[3]) or 0
local slots = (tonumber(st[4]) or 0) + (#ARGV - 2)
for i = 3, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
if #ARGV > 2 then redis.call('PEXPIRE', KEYS[2], 600000) end
if r >= 0 and tok >= 0 and slots >= 0 then o = 0 end
redis.call('HSET', KEYS[1], 'r', tostring(r), 't', tostring(tok), 'o', o, 's', slots)
redis.call('PEXPIRE', KEYS[1], 600000)
return {math.floor(r), math.floor(tok), slots}
`;

/*
 * slice settle: the ends of one key's requests in one event-loop turn
 * KEYS[1] slice hash  KEYS[2] concurrency leases  then per request: lease id, tokens back (negative: charge)
 */
const SETTLE = `
local tok = tonumber(redis.call('HGET', KEYS[1], 't')) or 0
for i = 1, #ARGV, 2 do
  if redis.call('ZREM', KEYS[2], ARGV[i]) == 1 then redis.call('HINCRBY', KEYS[1], 's', 1) end
  tok = tok + tonumber(ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 't', tostring(tok))
return 1
`;

/*
 * slice reclaim: an idle slice's positive part goes back to the home region
 * KEYS[1] slice hash  KEYS[2] slot names held  ARGV[1] idle ms
 * Returns {requests, tokens, slot names…} taken out (nothing when the slice was used recently)
 */
const RECLAIM = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local st = redis.call('HMGET', KEYS[1], 'r', 't', 'at', 's')
local at = tonumber(st[3]) or 0
if now - at < tonumber(ARGV[1]) then return {0, 0} end
local r = tonumber(st[1]) or 0
local tok = tonumber(st[2]) or 0
local free = math.max(0, tonumber(st[4]) or 0)
local gr = math.max(0, math.floor(r))
local gt = math.max(0, math.floor(tok))
local out = {gr, gt}
if free > 0 then
  local names = redis.call('SPOP', KEYS[2], free)
  for _, name in ipairs(names) do out[#out + 1] = name end
  free = #names
end
redis.call('HSET', KEYS[1], 'r', tostring(r - gr), 't', tostring(tok - gt), 's', (tonumber(st[4]) or 0) - free)
return out
`;

/*
 * slots gone: slots the home let expire (not renewed in time) leave the slice
 * KEYS[1] slice hash  KEYS[2] slot names held  ARGV[…] slot names
 */
const DROP_SLOTS = `
local n = 0
for i = 1, #ARGV do n = n + redis.call('SREM', KEYS[2], ARGV[i]) end
redis.call('HINCRBY', KEYS[1], 's', -n)
return n
`;

type SliceRedis = RedisClient & {
  switchyardSliceAdmit(k1: string, k2: string, ...args: (string | number)[]): Promise<number[]>;
  switchyardSliceAdd(k1: string, k2: string, ...args: (string | number)[]): Promise<number[]>;
  switchyardSliceSettle(k1: string, k2: string, ...args: (string | number)[]): Promise<number>;
  switchyardSliceReclaim(k1: string, k2: string, ...args: (string | number)[]): Promise<Array<number | string>>;
  switchyardSliceDropSlots(k1: string, k2: string, ...args: (string | number)[]): Promise<number>;
};

const REASONS: readonly (LimitReason | undefined)[] = [undefined, 'requests', 'tokens', 'concurrency'];
/** A request refused while a lease is on its way retries after about one inter-region round trip. */
const LEASE_RETRY_MS = 250;
/** The longest a request waits for a lease already in flight before it is refused. */
const LEASE_WAIT_MS = 1000;

/**
 * A key's limits in a region that is not the key budget's home: requests and tokens are admitted
 * against a slice held in this region's Redis (one script, no call to another region), leased
 * from the home region's buckets in the background before it runs dry, and given back when it
 * sits idle. Every slice comes out of the home buckets, and each region may run one request ahead
 * of its slice (paid back from its next lease), so a burst from one key to every region at once
 * admits at most the limit plus one request per region. While the home region cannot be reached
 * the region admits against buckets of its own (availability over precision: each partitioned
 * region then enforces the whole limit on its own), logged once, and keeps trying the home region
 * about once a second.
 *
 * A request that finds the slice dry while a lease is already on its way waits for that lease
 * (at most a second) instead of being refused: the only wait on another region, and only at the
 * edge of a slice. Concurrency is leased the same way, as named slots of the home's concurrency
 * set (a request takes a free slot of the slice and gives it back when it ends); the region renews
 * its slots, and those of a region that went away expire at the home within SLOT_TTL_MS.
 */
export class LeasedRateLimiter implements RateLimiter {
  private readonly redis: SliceRedis;
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Keys this process used, with their limits, for the idle-slice sweep. */
  private readonly touched = new Map<string, KeyLimits>();
  private readonly timer: NodeJS.Timeout;
  private partitioned = false;
  private lastAttemptAt = 0;
  /** This region's own buckets, used only while the home region is unreachable. */
  private readonly fallback: RedisRateLimiter;
  private readonly now: () => number;
  /** A key's admissions (and settles) of one event-loop turn go to the region's Redis as one script. */
  private readonly admissions = new TickBatcher<{ limits: KeyLimits; tokens: number; leaseId: string }, number[]>((k, items) => this.admitMany(k, items), 256, () => socketOf(this.redis));
  private readonly settlements = new TickBatcher<{ leaseId: string; giveBack: number }, void>((k, items) => this.settleMany(k, items), 256, () => socketOf(this.redis));
  /** Lease ids: a random tag per limiter (unique across gateways) and a counter. */
  private readonly leaseTag = `${randomBytes(6).toString('hex')}.`;
  private leaseCounter = 0;

  constructor(private readonly opts: LeasedRateLimiterOptions) {
    this.redis = opts.redis as SliceRedis;
    this.now = opts.now ?? Date.now;
    this.fallback = new RedisRateLimiter({ redis: opts.redis, keyPrefix: `${opts.keyPrefix}partitioned:`, ...(opts.leaseTtlMs === undefined ? {} : { leaseTtlMs: opts.leaseTtlMs }) });
    if (typeof (this.redis as Partial<SliceRedis>).switchyardSliceAdmit !== 'function') {
      this.redis.defineCommand('switchyardSliceAdmit', { numberOfKeys: 2, lua: ADMIT });
      this.redis.defineCommand('switchyardSliceAdd', { numberOfKeys: 2, lua: ADD });
      this.redis.defineCommand('switchyardSliceSettle', { numberOfKeys: 2, lua: SETTLE });
      this.redis.defineCommand('switchyardSliceReclaim', { numberOfKeys: 2, lua: RECLAIM });
      this.redis.defineCommand('switchyardSliceDropSlots', { numberOfKeys: 2, lua: DROP_SLOTS });
    }
    this.timer = setInterval(() => void this.reclaimIdle(), Math.max(250, Math.floor((opts.idleReturnMs ?? 2000) / 2)));
    this.timer.unref();
    // Leased slots expire at the home unless renewed: a third of their life.
    this.renewTimer = setInterval(() => void this.renewSlots(), Math.floor(SLOT_TTL_MS / 3));
    this.renewTimer.unref();
  }

  private readonly renewTimer: NodeJS.Timeout;

  /** `{keyId}`: the keys of one API key on one Redis Cluster slot (slice, request leases, slot names). */
  private keys(keyId: string): [string, string, string] {
    const base = `${this.opts.keyPrefix}slice:{${keyId}}`;
    return [base, `${base}:leases`, `${base}:slots`];
  }

  async admit(keyId: string, limits: KeyLimits, tokens: number): Promise<AdmitResult> {
    const first = await this.admitOnce(keyId, limits, tokens);
    if (first.allowed || first.reason === 'concurrency') return first;
    // The slice ran dry with a lease already on its way (a new key's first requests, or a burst
    // faster than the leases): wait for that lease rather than refuse, then look once more.
    const lease = this.inFlight.get(keyId);
    if (lease === undefined) return first;
    await Promise.race([lease, new Promise((r) => setTimeout(r, LEASE_WAIT_MS).unref())]);
    return this.admitOnce(keyId, limits, tokens);
  }

  private async admitOnce(keyId: string, limits: KeyLimits, tokens: number): Promise<AdmitResult> {
    if (this.partitioned) {
      if (this.now() - this.lastAttemptAt >= 1000) this.lease(keyId, limits);
      const own = await this.fallback.admit(keyId, limits, tokens);
      return own.leaseId === undefined ? own : { ...own, leaseId: `p:${own.leaseId}` };
    }
    const leaseId = `${this.leaseTag}${(++this.leaseCounter).toString(36)}`;
    const res = await this.admissions.add(keyId, { limits, tokens, leaseId });
    const allowed = res[0] === 1;
    const [requestsLeft, tokensLeft, slotsLeft] = [res[2] ?? 0, res[3] ?? 0, res[4] ?? 0];
    this.touched.set(keyId, limits);
    const low = this.opts.lowShare ?? 0.25;
    if (
      (limits.requestsPerMinute > 0 && requestsLeft < limits.requestsPerMinute * low) ||
      (limits.tokensPerMinute > 0 && tokensLeft < limits.tokensPerMinute * low) ||
      (limits.maxConcurrent > 0 && slotsLeft < Math.max(1, limits.maxConcurrent * low))
    ) {
      this.lease(keyId, limits);
    }
    const reason = REASONS[res[1] ?? 0];
    return {
      allowed,
      reason,
      retryAfterMs: allowed ? 0 : reason === 'concurrency' ? 1000 : LEASE_RETRY_MS,
      leaseId: allowed ? leaseId : undefined,
      limitRequests: limits.requestsPerMinute,
      remainingRequests: Math.max(0, requestsLeft),
      resetRequestsMs: 0,
      limitTokens: limits.tokensPerMinute,
      remainingTokens: Math.max(0, tokensLeft),
      resetTokensMs: 0,
    };
  }

  async settle(keyId: string, limits: KeyLimits, leaseId: string, reservedTokens: number, actualTokens: number): Promise<void> {
    if (leaseId.startsWith('p:')) return this.fallback.settle(keyId, limits, leaseId.slice(2), reservedTokens, actualTokens);
    await this.settlements.add(keyId, { leaseId, giveBack: reservedTokens - actualTokens });
  }

  /** One turn's admissions of a key as one script (the slice's own order decides, as one by one). */
  private async admitMany(keyId: string, items: readonly { limits: KeyLimits; tokens: number; leaseId: string }[]): Promise<number[][]> {
    const [slice, leases] = this.keys(keyId);
    const limits = (items[0] as { limits: KeyLimits }).limits;
    const args: (string | number)[] = [limits.requestsPerMinute, limits.tokensPerMinute, limits.maxConcurrent, this.opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS];
    for (const item of items) args.push(item.tokens, item.leaseId);
    const res = await this.redis.switchyardSliceAdmit(slice, leases, ...args);
    return items.map((_, i) => res.slice(i * 5, i * 5 + 5));
  }

  private async settleMany(keyId: string, items: readonly { leaseId: string; giveBack: number }[]): Promise<void[]> {
    const [slice, leases] = this.keys(keyId);
    const args: (string | number)[] = [];
    for (const item of items) args.push(item.leaseId, item.giveBack);
    await this.redis.switchyardSliceSettle(slice, leases, ...args);
    return new Array<void>(items.length);
  }

  /** Fetches the next slice in the background; one lease in flight per key and process. */
  private lease(keyId: string, limits: KeyLimits): void {
    if (this.inFlight.has(keyId)) return;
    this.lastAttemptAt = this.now();
    const share = this.opts.leaseShare ?? 0.5;
    const want = {
      requests: Math.ceil(limits.requestsPerMinute * share),
      tokens: Math.ceil(limits.tokensPerMinute * share),
      slots: Math.ceil(limits.maxConcurrent * share),
    };
    const done = this.opts.source
      .grant(keyId, limits, want)
      .then(
        (granted) => {
          if (this.partitioned) this.opts.log.info({}, 'limits home region reachable again: slices leased from it');
          this.partitioned = false;
          return granted;
        },
        (err: unknown) => {
          if (!this.partitioned) this.opts.log.warn({ err: (err as Error).message }, 'limits home region unreachable: this region enforces each key\'s limits on its own until it is back');
          this.partitioned = true;
          return { requests: 0, tokens: 0 } as Slice;
        },
      )
      .then(async (granted) => {
        const slots = Array.isArray(granted.slots) ? granted.slots : [];
        if (granted.requests > 0 || granted.tokens > 0 || slots.length > 0) {
          const [slice, , held] = this.keys(keyId);
          await this.redis.switchyardSliceAdd(slice, held, granted.requests, granted.tokens, ...slots);
        }
      })
      .catch((err: unknown) => this.opts.log.warn({ err: (err as Error).message }, 'applying a leased slice failed'))
      .finally(() => this.inFlight.delete(keyId));
    this.inFlight.set(keyId, done);
  }

  /** Idle slices go back to the home region, so the key's budget follows its traffic. */
  private async reclaimIdle(): Promise<void> {
    const idleMs = this.opts.idleReturnMs ?? 2000;
    for (const [keyId, limits] of this.touched) {
      if (this.inFlight.has(keyId)) continue;
      const [slice, , held] = this.keys(keyId);
      try {
        const [requests = 0, tokens = 0, ...slots] = await this.redis.switchyardSliceReclaim(slice, held, idleMs);
        if (Number(requests) === 0 && Number(tokens) === 0 && slots.length === 0) continue;
        this.touched.delete(keyId);
        if (!this.partitioned) await this.opts.source.giveBack(keyId, limits, { requests: Number(requests), tokens: Number(tokens), slots: slots.map(String) });
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'returning an idle slice failed');
      }
    }
  }

  /** Renews the slots this region holds for the keys it used; drops those the home let expire. */
  private async renewSlots(): Promise<void> {
    if (this.partitioned) return;
    for (const [keyId, limits] of this.touched) {
      if (limits.maxConcurrent <= 0) continue;
      const [slice, , held] = this.keys(keyId);
      try {
        const names = await this.redis.smembers(held);
        const gone = await this.opts.source.renewSlots(keyId, names);
        if (gone.length > 0) await this.redis.switchyardSliceDropSlots(slice, held, ...gone);
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'renewing leased concurrency slots failed');
      }
    }
  }

  /** Waits for leases in flight (tests, shutdown). */
  async settled(): Promise<void> {
    await Promise.all(this.inFlight.values());
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.renewTimer);
    await this.settled();
  }
}
