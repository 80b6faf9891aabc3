import { afterAll, describe, expect, it } from 'vitest';
import { MemoryLiveState, RedisLiveState, type LiveLoad, type LiveState } from '../../core/storage/live-state.js';
import { eventually } from '../helpers/processes.js';
import { testRedis, uniqueName } from '../helpers/services.js';

/** Load reports from the scheduler to every fleet view: memory (one process) and Redis agree. */
const root = `${uniqueName('sytest_live')}:`;
const redisConnections = testRedis(root);
afterAll(() => redisConnections.cleanup());

const load = (nodeId: string, running: number): LiveLoad => ({ nodeId, running, waiting: 0, kvCacheUsage: undefined, atMs: Date.now() });

const implementations: Array<[string, () => { publisher: LiveState; subscriber: LiveState; prefix: string }]> = [
  [
    'memory',
    () => {
      const s = new MemoryLiveState();
      return { publisher: s, subscriber: s, prefix: '' };
    },
  ],
  [
    'redis',
    () => {
      const prefix = `${root}${uniqueName('p')}:`;
      return {
        publisher: new RedisLiveState(redisConnections.connect(), prefix),
        subscriber: new RedisLiveState(redisConnections.connect(), prefix),
        prefix,
      };
    },
  ],
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

  it.runIf(kind === 'redis')('a late subscriber starts from the stored state; close leaves no subscription behind', async () => {
    const { publisher, subscriber, prefix } = make();
    publisher.publish(load('n2', 5));
    const redis = redisConnections.connect();
    await eventually(async () => (await redis.hget(`${prefix}live-nodes`, 'n2')) !== null, 2000, 'the stored load');
    const seen: LiveLoad[] = [];
    await subscriber.subscribe((l) => seen.push(l));
    await subscriber.subscribe(() => undefined);
    expect(seen).toMatchObject([{ nodeId: 'n2', running: 5 }]);
    const subscribers = async (): Promise<unknown> => (await redis.pubsub('NUMSUB', `${prefix}live-load`))[1];
    expect(await subscribers()).toBe(1);
    await subscriber.close();
    expect(await subscribers()).toBe(0);
  });
});
