import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { BUCKET_TTL_MARGIN_MS, checkArgs, CONCURRENCY_RETRY_MS, DEFAULT_LEASE_TTL_MS, OVERSIZE_RETRY_MS, WINDOW_MS } from './bucket.js';
import type { AdmitResult, KeyLimits, LimitReason, RateLimiter } from './rate-limiter.js';

/*
 * bucket.ts in Lua, so that a check and its take are one atomic step shared by every gateway.
 * Time is Redis's own clock (TIME; scripts replicate their effects, Redis >= 5), so gateways with
 * skewed clocks agree. Levels are stored with %.17g, so they round-trip as the same doubles.
 */
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local WINDOW = ${WINDOW_MS}

-- level and time of the bucket at key after refilling to now; no bucket reads as a full one
local function refill(key, limit)
  local s = redis.call('HMGET', key, 'level', 'at')
  local level, at = tonumber(s[1]), tonumber(s[2])
  if level == nil or at == nil then return limit, now end
  local dt = math.max(0, now - at)
  return math.min(limit, level + dt * limit / WINDOW), math.max(at, now)
end

local function untilFull(level, limit)
  if limit <= 0 then return 0 end
  return math.ceil((limit - level) * WINDOW / limit)
end

-- a full bucket is deleted; any other lives a little longer than it takes to fill up
local function save(key, limit, level, at)
  local ms = untilFull(level, limit)
  if ms <= 0 then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, 'level', string.format('%.17g', level), 'at', at)
    redis.call('PEXPIRE', key, ms + ${BUCKET_TTL_MARGIN_MS})
  end
end
`;

/**
 * admit
 * KEYS[1] requests bucket (hash: level, at ms)    KEYS[2] tokens bucket (hash: level, at ms)
 * KEYS[3] concurrency leases (sorted set: lease id scored by expiry ms)
 * ARGV[1] requests/min (0 = unlimited)   ARGV[2] tokens/min (0 = unlimited)
 * ARGV[3] max concurrent (0 = unlimited) ARGV[4] cost in tokens
 * ARGV[5] lease id                       ARGV[6] lease TTL ms
 * Returns {allowed 0|1, reason 0 none|1 requests|2 tokens|3 concurrency, retry after ms,
 *          remaining requests, reset requests ms, remaining tokens, reset tokens ms}
 */
const ADMIT = `${PRELUDE}
local rpm, tpm, maxc, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl = tonumber(ARGV[6])
local req, reqAt, tok, tokAt = 0, now, 0, now
if rpm > 0 then req, reqAt = refill(KEYS[1], rpm) end
if tpm > 0 then tok, tokAt = refill(KEYS[2], tpm) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local open = redis.call('ZCARD', KEYS[3])

local reason, retry = 0, 0
local function consider(code, wait)
  if reason == 0 or wait > retry then reason, retry = code, wait end
end
if tpm > 0 and cost > tpm then
  reason, retry = 2, ${OVERSIZE_RETRY_MS}
else
  if rpm > 0 and req < 1 then consider(1, math.ceil((1 - req) * WINDOW / rpm)) end
  if tpm > 0 and tok < cost then consider(2, math.ceil((cost - tok) * WINDOW / tpm)) end
  if maxc > 0 and open >= maxc then consider(3, ${CONCURRENCY_RETRY_MS}) end
end

if reason == 0 then
  if rpm > 0 then req = req - 1; save(KEYS[1], rpm, req, reqAt) end
  if tpm > 0 then tok = tok - cost; save(KEYS[2], tpm, tok, tokAt) end
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[5])
  -- the newest lease expires last; never shorten a TTL another replica set longer
  if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ttl) end
end
local remR, remT = 0, 0
if rpm > 0 then remR = math.floor(math.max(0, req)) end
if tpm > 0 then remT = math.floor(math.max(0, tok)) end
return {reason == 0 and 1 or 0, reason, retry, remR, untilFull(req, rpm), remT, untilFull(tok, tpm)}
`;

/**
 * settle
 * KEYS[1] tokens bucket (hash: level, at ms)   KEYS[2] concurrency leases (sorted set)
 * ARGV[1] tokens/min (0 = unlimited)   ARGV[2] lease id   ARGV[3] tokens to give back (negative: charge)
 * Returns 1 when the lease was held and is now settled, 0 when it was not (settled or expired).
 */
const SETTLE = `${PRELUDE}
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZREM', KEYS[2], ARGV[2]) == 0 then return 0 end
local tpm, delta = tonumber(ARGV[1]), tonumber(ARGV[3])
if tpm > 0 and delta ~= 0 then
  local tok, at = refill(KEYS[1], tpm)
  save(KEYS[1], tpm, math.min(tpm, tok + delta), at)
end
return 1
`;

const REASONS: readonly (LimitReason | undefined)[] = [undefined, 'requests', 'tokens', 'concurrency'];

type LimiterRedis = Redis & {
  switchyardLimitsAdmit(req: string, tok: string, conc: string, ...args: (string | number)[]): Promise<number[]>;
  switchyardLimitsSettle(tok: string, conc: string, ...args: (string | number)[]): Promise<number>;
};

/**
 * Limits shared by every gateway replica: one EVALSHA per admission and one per settle. The Redis
 * connection belongs to the caller (close() leaves it open); configure it to fail fast
 * (no offline queue, a command timeout) and wrap this in ResilientRateLimiter.
 */
export class RedisRateLimiter implements RateLimiter {
  private readonly redis: LimiterRedis;
  private readonly prefix: string;
  private readonly leaseTtlMs: number;

  constructor(opts: { redis: Redis; keyPrefix: string; leaseTtlMs?: number }) {
    this.redis = opts.redis as LimiterRedis;
    this.prefix = opts.keyPrefix;
    this.leaseTtlMs = opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    // defineCommand sends EVALSHA and retries as EVAL after NOSCRIPT (a restarted Redis).
    // Defining once per connection: several limiters may share one.
    if (typeof (this.redis as Partial<LimiterRedis>).switchyardLimitsAdmit !== 'function') {
      this.redis.defineCommand('switchyardLimitsAdmit', { numberOfKeys: 3, lua: ADMIT });
      this.redis.defineCommand('switchyardLimitsSettle', { numberOfKeys: 2, lua: SETTLE });
    }
  }

  /** `{keyId}` is a hash tag: all keys of one API key land on one Redis Cluster slot. */
  keys(keyId: string): { req: string; tok: string; conc: string } {
    const base = `${this.prefix}rl:{${keyId}}`;
    return { req: `${base}:req`, tok: `${base}:tok`, conc: `${base}:conc` };
  }

  async admit(keyId: string, limits: KeyLimits, tokens: number): Promise<AdmitResult> {
    checkArgs(limits, tokens);
    const { req, tok, conc } = this.keys(keyId);
    const leaseId = randomUUID();
    const { requestsPerMinute: rpm, tokensPerMinute: tpm, maxConcurrent } = limits;
    const res = await this.redis.switchyardLimitsAdmit(req, tok, conc, rpm, tpm, maxConcurrent, tokens, leaseId, this.leaseTtlMs);
    const allowed = res[0] === 1;
    return {
      allowed,
      reason: REASONS[res[1] ?? 0],
      retryAfterMs: res[2] ?? 0,
      leaseId: allowed ? leaseId : undefined,
      limitRequests: rpm,
      remainingRequests: res[3] ?? 0,
      resetRequestsMs: res[4] ?? 0,
      limitTokens: tpm,
      remainingTokens: res[5] ?? 0,
      resetTokensMs: res[6] ?? 0,
    };
  }

  async settle(keyId: string, limits: KeyLimits, leaseId: string, reservedTokens: number, actualTokens: number): Promise<void> {
    checkArgs(limits, reservedTokens, actualTokens);
    const { tok, conc } = this.keys(keyId);
    await this.redis.switchyardLimitsSettle(tok, conc, limits.tokensPerMinute, leaseId, reservedTokens - actualTokens);
  }

  async close(): Promise<void> {
    // Nothing of its own to release: the connection is the caller's.
  }
}
