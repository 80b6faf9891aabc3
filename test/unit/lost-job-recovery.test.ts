import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RedisClient } from '../../core/redis-connection.js';
import { LostJobRecovery } from '../../gateway/responses/lost-job-recovery.js';

/** Jobs a failover lost are enqueued again, once Redis answers; nothing else is. */
afterEach(() => {
  vi.useRealTimers();
});

function setup(jobs: Set<string>, queued: Set<string>) {
  vi.useFakeTimers();
  let now = 1_000_000;
  const connection = new EventEmitter();
  const requeued: string[] = [];
  let reachable = true;
  const recovery = new LostJobRecovery({
    connection: connection as unknown as RedisClient,
    exists: (id) => (reachable ? Promise.resolve(jobs.has(id)) : Promise.reject(new Error('ECONNREFUSED'))),
    stillQueued: (id) => Promise.resolve(queued.has(id)),
    enqueue: (id) => {
      requeued.push(id);
      jobs.add(id);
      return Promise.resolve();
    },
    now: () => now,
  });
  return {
    connection, recovery, requeued,
    advance: (ms: number) => (now += ms),
    setReachable: (r: boolean) => (reachable = r),
  };
}

describe('LostJobRecovery', () => {
  it('after a sign of trouble, enqueues again each recent job that is gone while its response is still queued', async () => {
    // a: lost in the failover; b: still in the queue; c: ran and finished (gone, not queued).
    const t = setup(new Set(['b']), new Set(['a', 'b']));
    for (const id of ['a', 'b', 'c']) t.recovery.enqueued(id);
    t.setReachable(false);
    t.connection.emit('error', new Error('ECONNRESET'));
    await vi.advanceTimersByTimeAsync(2000);
    expect(t.requeued).toEqual([]); // Redis still away: tried again later
    t.setReachable(true);
    await vi.advanceTimersByTimeAsync(2000);
    expect(t.requeued).toEqual(['a']);
    // Nothing more without new trouble.
    await vi.advanceTimersByTimeAsync(10_000);
    expect(t.requeued).toEqual(['a']);
    t.recovery.close();
  });

  it('looks only at enqueues from shortly before the trouble, and does nothing without trouble', async () => {
    const t = setup(new Set(), new Set(['old', 'new']));
    t.recovery.enqueued('old');
    t.advance(60_000);
    t.recovery.enqueued('new');
    await vi.advanceTimersByTimeAsync(5000);
    expect(t.requeued).toEqual([]);
    t.connection.emit('node error', new Error('connect ECONNREFUSED'));
    await vi.advanceTimersByTimeAsync(2000);
    expect(t.requeued).toEqual(['new']);
    t.recovery.close();
  });
});
