import type { Redis } from 'ioredis';
import type { Logger } from './logger.js';

/** What re-emits a connection's errors: a BullMQ Queue, Worker or QueueEvents built on the client. */
export interface RedisErrorSource {
  on(event: 'error', listener: (err: Error) => void): unknown;
}

/** Errors that mean "Redis cannot be reached", as ioredis and BullMQ report them. */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
const CONNECTION_MESSAGES = /Connection is closed|Stream isn't writeable|connect ETIMEDOUT|ECONNREFUSED|ECONNRESET/;

function isConnectionError(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return (typeof code === 'string' && CONNECTION_CODES.has(code)) || err.name === 'MaxRetriesPerRequestError' || CONNECTION_MESSAGES.test(err.message);
}

/**
 * Gives a Redis connection of one role (`state`, `live-state-subscriber`, `bullmq-worker`, …) the
 * 'error' listener every connection needs: without one, ioredis prints "[ioredis] Unhandled error
 * event" and a stack trace on each failed reconnect, and BullMQ prints the error of a Queue or
 * Worker that has none. Connections reconnect by themselves; this only says so, once per outage:
 * `redis unreachable` (warn, the first error) when the role's connections start failing, and
 * `redis reachable again` (info) when `client` is ready again.
 *
 * `sources` are the BullMQ objects built on `client`: their connection errors (the blocking
 * connections BullMQ opens itself) while `client` is not ready belong to the same outage; any
 * other error of theirs is logged as it comes. Without a logger (tests, benchmarks) errors are
 * only absorbed.
 */
export function watchRedis(client: Redis, role: string, log: Logger | undefined, ...sources: readonly RedisErrorSource[]): void {
  let down = false;
  const failed = (err: Error): void => {
    if (!down) log?.warn({ role, err: err.message }, 'redis unreachable');
    down = true;
  };
  client.on('error', failed);
  client.on('ready', () => {
    if (down) log?.info({ role }, 'redis reachable again');
    down = false;
  });
  for (const source of sources) {
    source.on('error', (err: Error) => {
      if (client.status !== 'ready' && isConnectionError(err)) failed(err);
      else log?.warn({ role, err: err.message }, 'redis client error');
    });
  }
}

/**
 * Closes a connection: QUIT when it is connected (pending replies arrive first), else at once.
 * QUIT on a connection that is reconnecting waits for Redis to come back (a subscriber, or any
 * connection with an offline queue), so a process told to stop during an outage would never exit.
 */
export async function closeRedis(client: Redis | undefined): Promise<void> {
  if (client === undefined) return;
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  await client.quit().then(
    () => undefined,
    () => client.disconnect(),
  );
}
