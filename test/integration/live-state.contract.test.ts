import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryLiveState, RedisLiveState, type LiveLoad, type LiveState } from '../../core/storage/live-state.js';
import { eventually } from '../helpers/processes.js';
import { redisBackends, subscriberCount, type TopologyHandle } from '../helpers/redis-topologies.js';
import { uniqueName } from '../helpers/services.js';

/** Load reports from the scheduler to every fleet view: memory (one process) and Redis agree. */
const root = `${uniqueName('sytest_live')}:`;
const backends = redisBackends(root);
beforeAll(() => backends.start(), 60_000);
afterAll(() => backends.stop());

const load = (nodeId: string, running: number): LiveLoad => ({ nodeId, running, waiting: 0, kvCacheUsage: undefined, atMs: Date.now() });

type Make = () => { publisher: LiveState; subscriber: LiveState; prefix: string; redis: TopologyHandle | undefined };
const implementations: Array<[string, Make]> = [
  [
    'memory',
    () => {
      const s = new MemoryLiveState();
      return { publisher: s, subscriber: s, prefix: '', redis: undefined };
    },
  ],
  ...backends.each.map(([name, redis]): [string, Make] => [
    `redis ${name}`,
    () => {
      const prefix = `${root}${uniqueName('p')}:`;
      return {
        publisher: new RedisLiveState(redis.connect(), prefix),
        subscriber: new RedisLiveState(redis.connect(), prefix),
        prefix,
        redis,
      };
    },
  ]),
];

describe.each(implementations)('%s live state', (kind, make) => {
  it('delivers every report to every subscriber of one instance (gateway and worker in one process)', async () => {
    const { publisher, subscriber } = make();
    const seenByGateway: LiveLoad[] = [];
    const seenByWorker: LiveLoad[] = [];
    await subscriber.subscribe((l) => seenByGateway.push(l));
    await subscriber.subscribe((l) => seenByWorker.push(l));
    publisher.publish(load('n1', 3));
    await eventually(async () => seenByGateway.length === 1 && seenByWorker.length === 1, 2000, 'both subscribers');
    expect(seenByWorker[0]).toMatchObject({ nodeId: 'n1', running: 3 });
    await subscriber.close();
    if (publisher !== subscriber) await publisher.close();
  });

  it.runIf(kind !== 'memory')('a late subscriber starts from the stored state; close leaves no subscription behind', async () => {
    const { publisher, subscriber, prefix, redis: handle } = make();
    publisher.publish(load('n2', 5));
    const redis = (handle as TopologyHandle).connect();
    await eventually(async () => (await redis.hget(`${prefix}live-nodes`, 'n2')) !== null, 2000, 'the stored load');
    const seen: LiveLoad[] = [];
    await subscriber.subscribe((l) => seen.push(l));
    await subscriber.subscribe(() => undefined);
    // The stored load, and possibly the same publication delivered late (a Cluster forwards
    // PUBLISH between nodes): every load seen is n2's, and there is one.
    expect(seen.length).toBeGreaterThanOrEqual(1);
    expect(seen.every((l) => l.nodeId === 'n2' && l.running === 5)).toBe(true);
    const subscribers = (): Promise<number> => subscriberCount(redis, `${prefix}live-load`);
    expect(await subscribers()).toBe(1);
    await subscriber.close();
    expect(await subscribers()).toBe(0);
  });
});
