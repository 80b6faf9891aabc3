import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../core/config/settings.js';
import { ConfigError } from '../../core/config/config-error.js';
import { createLogger } from '../../core/logger.js';
import { RedisRateLimiter } from '../../core/ratelimit/redis-rate-limiter.js';
import { closeRedis, connectRedis, isRedisUnavailable, redisEndpoint, registerRedisMetrics } from '../../core/redis-connection.js';
import { checkRedisDurability } from '../../core/redis-durability.js';
import { eventually } from '../helpers/processes.js';
import { freePort, startRedisServer, startSentinel, startTls, type StartedTopology } from '../helpers/redis-topologies.js';

/** The connection factory: TLS with a CA file, settings checks, per-role metrics, the durability check. */
const dir = mkdtempSync(join(tmpdir(), 'sy-redis-conn-'));
let tls: StartedTopology & { caFile: string };
beforeAll(async () => {
  tls = await startTls();
}, 60_000);
afterAll(async () => {
  await tls.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A logger whose lines are kept, to assert on what was said. */
function capturingLogger(): { log: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) } as unknown as NodeJS.WritableStream;
  const log = createLogger({ name: 'test', level: 'info', format: 'json' }, sink);
  return { log, lines };
}

describe('connectRedis over TLS', () => {
  it('rediss:// with SWITCHYARD_REDIS_CA_FILE verifies the server against that CA and serves the limiter', async () => {
    const redis = connectRedis(tls.endpoint, 'tls-test', undefined, 'queue');
    try {
      expect(await redis.ping()).toBe('PONG');
      const limiter = new RedisRateLimiter({ redis, keyPrefix: 'tls:' });
      expect((await limiter.admit('k', { requestsPerMinute: 1, tokensPerMinute: 0, maxConcurrent: 0 }, 1)).allowed).toBe(true);
      expect((await limiter.admit('k', { requestsPerMinute: 1, tokensPerMinute: 0, maxConcurrent: 0 }, 1)).allowed).toBe(false);
    } finally {
      await closeRedis(redis);
    }
  });

  it('without the CA file the self-signed server is refused (the certificate is checked)', async () => {
    const { log, lines } = capturingLogger();
    const redis = connectRedis({ ...tls.endpoint, redisCaFile: undefined }, 'tls-untrusted', log, 'state');
    try {
      await eventually(async () => lines.some((l) => l['msg'] === 'redis unreachable'), 5000, 'the refusal to be logged');
      expect(String(lines.find((l) => l['msg'] === 'redis unreachable')?.['err'])).toMatch(/certificate/i);
      expect(redis.status).not.toBe('ready');
    } finally {
      await closeRedis(redis);
    }
  });
});

describe('connectRedis through Sentinel with passwords', () => {
  it('authenticates to the sentinels and to the master with their own passwords', async () => {
    const t = await startSentinel({ password: 'server-secret', sentinelPassword: 'sentinel-secret' });
    const good = connectRedis(t.endpoint, 'sentinel-auth', undefined, 'queue');
    const { log, lines } = capturingLogger();
    const wrong = connectRedis({ ...t.endpoint, redisPassword: 'nope' }, 'sentinel-auth-wrong', log, 'state');
    try {
      await good.set('k', 'v');
      expect(await good.get('k')).toBe('v');
      await eventually(async () => lines.some((l) => l['msg'] === 'redis unreachable'), 5000, 'the wrong password refused');
      expect(String(lines.find((l) => l['msg'] === 'redis unreachable')?.['err'])).toMatch(/WRONGPASS|NOAUTH|invalid/i);
    } finally {
      await Promise.all([closeRedis(good), closeRedis(wrong)]);
      await t.stop();
    }
  }, 30_000);
});

describe('Redis settings', () => {
  it('accepts one of REDIS_URL, Sentinel or Cluster, and Sentinel only with a master name', () => {
    expect(loadSettings({ SWITCHYARD_REDIS_CLUSTER: '127.0.0.1:7000' }).redisCluster).toBe('127.0.0.1:7000');
    expect(() => loadSettings({ REDIS_URL: 'redis://x', SWITCHYARD_REDIS_CLUSTER: '127.0.0.1:7000' })).toThrow(ConfigError);
    expect(() => loadSettings({ SWITCHYARD_REDIS_SENTINELS: '127.0.0.1:26379' })).toThrow(/SWITCHYARD_REDIS_MASTER/);
  });
});

describe('per-role connection metrics', () => {
  it('switchyard_redis_connection_up goes to 0 and reconnects are counted while the server is gone, back to 1 after', async () => {
    const port = await freePort();
    let server = await startRedisServer(dir, port);
    const registry = new Registry();
    registerRedisMetrics(registry);
    const redis = connectRedis(redisEndpoint(`redis://127.0.0.1:${port}`), 'metrics-test', undefined, 'state');
    const value = async (name: string): Promise<number | undefined> =>
      (await registry.getSingleMetric(name)?.get())?.values.find((v) => v.labels['role'] === 'metrics-test')?.value;
    try {
      await eventually(async () => (await value('switchyard_redis_connection_up')) === 1, 5000, 'up');
      await server.kill();
      await eventually(async () => (await value('switchyard_redis_connection_up')) === 0, 5000, 'down');
      await eventually(async () => ((await value('switchyard_redis_reconnects_total')) ?? 0) >= 1, 5000, 'a reconnect counted');
      server = await startRedisServer(dir, port);
      await eventually(async () => (await value('switchyard_redis_connection_up')) === 1, 10_000, 'up again');
    } finally {
      await closeRedis(redis);
      await server.kill();
    }
  });
});

describe('checkRedisDurability', () => {
  it('warns about a Redis without an append-only file or with an evicting policy, and is quiet about a durable one', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const loose = await startRedisServer(dir, p1, ['--maxmemory-policy', 'allkeys-lru']);
    const durable = await startRedisServer(dir, p2, ['--appendonly', 'yes', '--maxmemory-policy', 'noeviction']);
    const a = connectRedis(redisEndpoint(`redis://127.0.0.1:${p1}`), 'durability', undefined, 'queue');
    const b = connectRedis(redisEndpoint(`redis://127.0.0.1:${p2}`), 'durability', undefined, 'queue');
    try {
      const { log, lines } = capturingLogger();
      expect(await checkRedisDurability(a, log)).toBe('warned');
      expect(lines.map((l) => l['msg'])).toEqual([expect.stringMatching(/keeps no data across a restart/), expect.stringMatching(/may evict keys/)]);
      const quiet = capturingLogger();
      expect(await checkRedisDurability(b, quiet.log)).toBe('ok');
      expect(quiet.lines).toEqual([]);
    } finally {
      await Promise.all([closeRedis(a), closeRedis(b)]);
      await Promise.all([loose.kill(), durable.kill()]);
    }
  });
});

describe('isRedisUnavailable', () => {
  it('tells Redis being away (connection, failover, Cluster slot moving) from other errors', () => {
    for (const m of ['connect ECONNREFUSED 127.0.0.1:6379', 'Too many Cluster redirections. Last error: Error: Connection is closed.', "Stream isn't writeable and enableOfflineQueue options is false", 'MOVED 1279 127.0.0.1:45167', 'CLUSTERDOWN The cluster is down', "READONLY You can't write against a read only replica.", 'Command timed out']) {
      expect(isRedisUnavailable(new Error(m))).toBe(true);
    }
    expect(isRedisUnavailable(new Error('ERR wrong number of arguments'))).toBe(false);
    expect(isRedisUnavailable(new TypeError("Cannot read properties of undefined (reading 'id')"))).toBe(false);
  });
});
