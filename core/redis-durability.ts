import { Cluster, type Redis } from 'ioredis';
import type { Logger } from './logger.js';
import type { RedisClient } from './redis-connection.js';

/**
 * Warns when Redis would lose what background jobs need kept (docs/redis.md): no append-only file,
 * or an eviction policy other than `noeviction` (BullMQ's keys evicted under memory pressure).
 * Managed services often refuse CONFIG: then it says it could not check. Every master of a Cluster
 * is asked.
 */
export async function checkRedisDurability(client: RedisClient, log: Logger): Promise<'ok' | 'warned' | 'unknown'> {
  const servers: Redis[] = client instanceof Cluster ? client.nodes('master') : [client];
  let result: 'ok' | 'warned' | 'unknown' = 'ok';
  for (const server of servers) {
    try {
      const [, appendonly] = (await server.config('GET', 'appendonly')) as string[];
      const [, policy] = (await server.config('GET', 'maxmemory-policy')) as string[];
      const [, save] = (await server.config('GET', 'save')) as string[];
      const at = `${server.options.host ?? ''}:${server.options.port ?? ''}`;
      if (appendonly !== 'yes') {
        log.warn({ redis: at, appendonly, save }, save === '' ? 'redis keeps no data across a restart (no appendonly, no snapshots): queued background jobs would be lost; set appendonly yes' : 'redis appendonly is off: background jobs queued since the last snapshot would be lost on a restart; set appendonly yes');
        result = 'warned';
      }
      if (policy !== 'noeviction') {
        log.warn({ redis: at, maxmemoryPolicy: policy }, 'redis may evict keys under memory pressure: background jobs could vanish; set maxmemory-policy noeviction');
        result = 'warned';
      }
    } catch (err) {
      log.info({ err: (err as Error).message }, 'could not read the Redis persistence settings (CONFIG GET refused); see docs/redis.md for what background jobs need');
      return 'unknown';
    }
  }
  return result;
}
