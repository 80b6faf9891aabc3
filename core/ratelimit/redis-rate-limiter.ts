import { randomBytes } from 'node:crypto';
import { socketOf, type RedisClient } from '../redis-connection.js';
import { TickBatcher } from '../tick-batcher.js';
import { DEFAULT_LEASE_TTL_MS, type AdmitResult, type KeyLimits, type LimitReason, type RateLimiter } from './rate-limiter.js';

/*
 * The bucket arithmetic of rate-limiter.ts (refill, refusal, limitState), in Lua so that a check
 * and its take are one atomic step on Redis, shared by every gateway. Time is Redis's own clock,
 * so gateways with skewed clocks agree.
 */
const COMMON = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'r', 't', 'at')
local r = tonumber(state[1]) or rpm
local tok = tonumber(state[2]) or tpm
local at = tonumber(state[3]) or now
local dt = math.max(0, now - at)
if rpm > 0 then r = math.min(rpm, r + dt * rpm / 60000) end
if tpm > 0 then tok = math.min(tpm, tok + dt * tpm / 60000) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local function save()
  redis.call('HSET', KEYS[1], 'r', tostring(r), 't', tostring(tok), 'at', now)
  redis.call('PEXPIRE', KEYS[1], 120000)
end
`;

/**
 * admit: the admissions of one key that arrived in one event-loop turn, in order
 * KEYS[1] bucket hash (r: request tokens, t: tokens, at: last refill ms)
 * KEYS[2] concurrency leases (sorted set: lease id scored by expiry ms)
 * ARGV[1] requests/min (0 = unlimited)   ARGV[2] tokens/min (0 = unlimited)
 * ARGV[3] max concurrent (0 = unlimited) ARGV[4] lease TTL ms
 * then per admission: cost in tokens, lease id
 * Returns per admission {allowed 0|1, reason 0 none|1 requests|2 tokens|3 concurrency,
 *   retryAfterMs, remaining requests, reset requests ms, remaining tokens, reset tokens ms}
 */
const ADMIT = `${COMMON}
local maxc = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local open = 0
if maxc > 0 then open = redis.call('ZCARD', KEYS[2]) end
local leased = false
local out = {}
for i = 5, #ARGV, 2 do
  local cost = tonumber(ARGV[i])
  local reason = 0
  local retry = 0
  if rpm > 0 and r < 1 then
    reason = 1; retry = (1 - r) * 60000 / rpm
  elseif tpm > 0 and cost > tpm then
    reason = 2; retry = 60000
  elseif tpm > 0 and tok < cost then
    reason = 2; retry = (cost - tok) * 60000 / tpm
  elseif maxc > 0 and open >= maxc then
    reason = 3; retry = 1000
  end
  if reason == 0 then
    r = r - 1
    tok = tok - cost
    if maxc > 0 then
      redis.call('ZADD', KEYS[2], now + ttl, ARGV[i + 1])
      open = open + 1
      leased = true
    end
  end
  local resetR = 0
  local resetT = 0
  if rpm > 0 then resetR = math.ceil((rpm - r) * 60000 / rpm) end
  if tpm > 0 then resetT = math.ceil((tpm - tok) * 60000 / tpm) end
  out[#out + 1] = reason == 0 and 1 or 0
  out[#out + 1] = reason
  out[#out + 1] = math.ceil(retry)
  out[#out + 1] = math.floor(math.max(0, r))
  out[#out + 1] = resetR
  out[#out + 1] = math.floor(math.max(0, tok))
  out[#out + 1] = resetT
end
if leased then redis.call('PEXPIRE', KEYS[2], ttl) end
save()
return out
`;

/**
 * settle: the ends of one key's requests in one event-loop turn
 * KEYS[1] bucket hash  KEYS[2] concurrency leases
 * ARGV[1] requests/min  ARGV[2] tokens/min
 * then per request: lease id, tokens to give back (negative: charge)
 */
const SETTLE = `${COMMON}
for i = 3, #ARGV, 2 do
  redis.call('ZREM', KEYS[2], ARGV[i])
  if tpm > 0 then tok = math.min(tpm, tok + tonumber(ARGV[i + 1])) end
end
save()
return 1
`;

/**
 * grant: another region leases a slice of the key's budget (see LeasedRateLimiter)
 * KEYS[1] bucket hash  KEYS[2] concurrency leases
 * ARGV[1] requests/min  ARGV[2] tokens/min  ARGV[3] requests wanted  ARGV[4] tokens wanted
 * ARGV[5] max concurrent  ARGV[6] slots wanted  ARGV[7] region  ARGV[8] slot TTL ms
 * Returns {requests granted, tokens granted, slot names…}: what the buckets hold, at most what was
 * asked. A leased slot is a member of the same concurrency set as this region's own requests
 * (named slot:<region>:<n>), so every admission here counts it, and it expires unless renewed.
 */
const GRANT = `${COMMON}
local gr = 0
local gt = 0
if rpm > 0 then gr = math.max(0, math.min(tonumber(ARGV[3]), math.floor(r))) end
if tpm > 0 then gt = math.max(0, math.min(tonumber(ARGV[4]), math.floor(tok))) end
r = r - gr
tok = tok - gt
save()
local out = {gr, gt}
local maxc = tonumber(ARGV[5])
if maxc > 0 then
  local free = maxc - redis.call('ZCARD', KEYS[2])
  local gs = math.max(0, math.min(tonumber(ARGV[6]), free))
  for i = 1, gs do
    local name = 'slot:' .. ARGV[7] .. ':' .. redis.call('HINCRBY', KEYS[1], 'n', 1)
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[8]), name)
    out[#out + 1] = name
  end
  if gs > 0 then redis.call('PEXPIRE', KEYS[2], math.max(tonumber(ARGV[8]), redis.call('PTTL', KEYS[2]))) end
end
return out
`;

/**
 * slots: renew (ARGV[1] = TTL ms) or, with ARGV[1] = 0, give back a region's leased slots
 * KEYS[1] concurrency leases  ARGV[2…] slot names
 * Returns the names no longer held (expired before their renewal).
 */
const SLOTS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local gone = {}
for i = 2, #ARGV do
  if ttl == 0 then
    redis.call('ZREM', KEYS[1], ARGV[i])
  elseif redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[i]) == 0 and not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    gone[#gone + 1] = ARGV[i]
  end
end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], math.max(ttl, redis.call('PTTL', KEYS[1]))) end
return gone
`;

/**
 * give back: a region returns the unused part of its slice
 * KEYS[1] bucket hash  KEYS[2] concurrency leases
 * ARGV[1] requests/min  ARGV[2] tokens/min  ARGV[3] requests  ARGV[4] tokens
 */
const GIVE_BACK = `${COMMON}
if rpm > 0 then r = math.min(rpm, r + tonumber(ARGV[3])) end
if tpm > 0 then tok = math.min(tpm, tok + tonumber(ARGV[4])) end
save()
return 1
`;

const REASONS: readonly (LimitReason | undefined)[] = [undefined, 'requests', 'tokens', 'concurrency'];

type LimiterRedis = RedisClient & {
  switchyardAdmit(k1: string, k2: string, ...args: (string | number)[]): Promise<number[]>;
  switchyardSettle(k1: string, k2: string, ...args: (string | number)[]): Promise<number>;
  switchyardGrant(k1: string, k2: string, ...args: (string | number)[]): Promise<number[]>;
  switchyardGiveBack(k1: string, k2: string, ...args: (string | number)[]): Promise<number>;
  switchyardSlots(k1: string, ...args: (string | number)[]): Promise<string[]>;
};

/** Requests and tokens of a key's budget moving between regions, and concurrency slots by name. */
export interface Slice {
  readonly requests: number;
  readonly tokens: number;
  /** Slots wanted (a count, in a request) or granted (their names). */
  readonly slots?: number | readonly string[];
}

/** How long a region's leased concurrency slot lives at the home unless the region renews it. */
export const SLOT_TTL_MS = 30_000;

interface Admission {
  readonly limits: KeyLimits;
  readonly tokens: number;
  readonly leaseId: string;
}

interface Settlement {
  readonly limits: KeyLimits;
  readonly leaseId: string;
  readonly giveBack: number;
}

/**
 * Limits shared by every gateway replica. The admissions of one key that arrive in one event-loop
 * turn go to Redis as one EVALSHA, and so do its settles: under load, one command serves many
 * requests. (A key's limits are those of the turn's first request: a change takes effect from the
 * next turn.)
 */
export class RedisRateLimiter implements RateLimiter {
  private readonly redis: LimiterRedis;
  private readonly prefix: string;
  private readonly leaseTtlMs: number;
  /** Lease ids: a random tag per limiter (unique across gateways) and a counter; cheaper than a UUID. */
  private readonly leaseTag = `${randomBytes(6).toString('hex')}.`;
  private leaseCounter = 0;
  private readonly admissions = new TickBatcher<Admission, AdmitResult>((keyId, items) => this.admitMany(keyId, items), 256, () => socketOf(this.redis));
  private readonly settlements = new TickBatcher<Settlement, void>((keyId, items) => this.settleMany(keyId, items), 256, () => socketOf(this.redis));

  constructor(opts: { redis: RedisClient; keyPrefix: string; leaseTtlMs?: number }) {
    this.redis = opts.redis as LimiterRedis;
    this.prefix = opts.keyPrefix;
    this.leaseTtlMs = opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    // defineCommand sends EVALSHA and falls back to EVAL after a NOSCRIPT (e.g. a Redis restart).
    if (typeof (this.redis as Partial<LimiterRedis>).switchyardAdmit !== 'function') {
      this.redis.defineCommand('switchyardAdmit', { numberOfKeys: 2, lua: ADMIT });
      this.redis.defineCommand('switchyardSettle', { numberOfKeys: 2, lua: SETTLE });
      this.redis.defineCommand('switchyardGrant', { numberOfKeys: 2, lua: GRANT });
      this.redis.defineCommand('switchyardGiveBack', { numberOfKeys: 2, lua: GIVE_BACK });
      this.redis.defineCommand('switchyardSlots', { numberOfKeys: 1, lua: SLOTS });
    }
  }

  /** `{keyId}` is a hash tag: both keys of one API key land on one Redis Cluster slot. */
  private keys(keyId: string): [string, string] {
    return [`${this.prefix}rl:{${keyId}}:bucket`, `${this.prefix}rl:{${keyId}}:leases`];
  }

  admit(keyId: string, limits: KeyLimits, tokens: number): Promise<AdmitResult> {
    return this.admissions.add(keyId, { limits, tokens, leaseId: `${this.leaseTag}${(++this.leaseCounter).toString(36)}` });
  }

  settle(keyId: string, limits: KeyLimits, leaseId: string, reservedTokens: number, actualTokens: number): Promise<void> {
    return this.settlements.add(keyId, { limits, leaseId, giveBack: reservedTokens - actualTokens });
  }

  private async admitMany(keyId: string, items: readonly Admission[]): Promise<AdmitResult[]> {
    const [bucket, leases] = this.keys(keyId);
    const limits = (items[0] as Admission).limits;
    const args: (string | number)[] = [limits.requestsPerMinute, limits.tokensPerMinute, limits.maxConcurrent, this.leaseTtlMs];
    for (const item of items) args.push(item.tokens, item.leaseId);
    const res = await this.redis.switchyardAdmit(bucket, leases, ...args);
    const out: AdmitResult[] = [];
    for (let i = 0; i < items.length; i++) {
      const o = i * 7;
      const allowed = res[o] === 1;
      out.push({
        allowed,
        reason: REASONS[res[o + 1] ?? 0],
        retryAfterMs: res[o + 2] ?? 0,
        leaseId: allowed ? (items[i] as Admission).leaseId : undefined,
        limitRequests: limits.requestsPerMinute,
        remainingRequests: limits.requestsPerMinute > 0 ? (res[o + 3] ?? 0) : 0,
        resetRequestsMs: res[o + 4] ?? 0,
        limitTokens: limits.tokensPerMinute,
        remainingTokens: limits.tokensPerMinute > 0 ? (res[o + 5] ?? 0) : 0,
        resetTokensMs: res[o + 6] ?? 0,
      });
    }
    return out;
  }

  private async settleMany(keyId: string, items: readonly Settlement[]): Promise<void[]> {
    const [bucket, leases] = this.keys(keyId);
    const limits = (items[0] as Settlement).limits;
    const args: (string | number)[] = [limits.requestsPerMinute, limits.tokensPerMinute];
    for (const item of items) args.push(item.leaseId, item.giveBack);
    await this.redis.switchyardSettle(bucket, leases, ...args);
    return new Array<void>(items.length);
  }

  /**
   * Takes up to `want` from the key's buckets for another region's slice (this is the limits home
   * region): the same buckets this region's own requests are admitted against.
   */
  async grant(keyId: string, limits: KeyLimits, want: Slice, region = ''): Promise<Slice> {
    const [bucket, leases] = this.keys(keyId);
    const slots = typeof want.slots === 'number' ? want.slots : 0;
    const res = await this.redis.switchyardGrant(
      bucket, leases, limits.requestsPerMinute, limits.tokensPerMinute, want.requests, want.tokens, limits.maxConcurrent, slots, region, SLOT_TTL_MS,
    );
    return { requests: Number(res[0] ?? 0), tokens: Number(res[1] ?? 0), slots: res.slice(2).map(String) };
  }

  /** Puts back what a region did not use (capped at the buckets' size), slots included. */
  async giveBack(keyId: string, limits: KeyLimits, slice: Slice): Promise<void> {
    const [bucket, leases] = this.keys(keyId);
    await this.redis.switchyardGiveBack(bucket, leases, limits.requestsPerMinute, limits.tokensPerMinute, slice.requests, slice.tokens);
    if (Array.isArray(slice.slots) && slice.slots.length > 0) await this.redis.switchyardSlots(leases, 0, ...slice.slots);
  }

  /** Keeps a region's leased slots alive; returns those that had expired already. */
  async renewSlots(keyId: string, names: readonly string[]): Promise<string[]> {
    if (names.length === 0) return [];
    return this.redis.switchyardSlots(this.keys(keyId)[1], SLOT_TTL_MS, ...names);
  }

  async close(): Promise<void> {
    // The Redis connection belongs to the caller.
  }
}
