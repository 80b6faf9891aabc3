import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoggedEventSink, RedisEventLog, type FollowEnd, type LoggedEvent } from '../../gateway/responses/response-event-log.js';
import { ResponseEventWriter } from '../../gateway/responses/response-events.js';
import { redisBackends } from '../helpers/redis-topologies.js';
import { uniqueName } from '../helpers/services.js';

/**
 * The event log of streamed background responses, on the machine's Redis (own prefix), a
 * 3-master Cluster (streams and the announcement channel on different nodes) and a Sentinel set.
 */
const prefix = `${uniqueName('sytest')}:`;
const backends = redisBackends(prefix);
beforeAll(() => backends.start(), 60_000);
afterAll(() => backends.stop());
// Set per backend below: the helpers follow with `gateway` and write with `worker`.
let gateway: RedisEventLog; // follows
let worker: RedisEventLog; // writes, as another process would

const RESPONSE = { id: 'r', status: 'queued' };

/** Follows `id` in the background, collecting what it is sent. */
function follow(id: string, startingAfter = -1, isSettled: () => Promise<boolean> = () => Promise.resolve(false)) {
  const seen: LoggedEvent[] = [];
  const closed = new AbortController();
  const done: Promise<FollowEnd> = gateway.follow(id, { startingAfter, signal: closed.signal, isSettled, onEvent: (e) => seen.push(e) });
  return { seen, closed, done };
}

async function until(probe: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !probe(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(probe()).toBe(true);
}

/** What the gateway writes before the job exists, then a worker run's first events. */
async function queuedThenStarted(id: string, run: number, deltas: string[]): Promise<{ writer: ResponseEventWriter; sink: LoggedEventSink }> {
  const accepted = new LoggedEventSink(worker, id, 0);
  new ResponseEventWriter(accepted).queued(RESPONSE);
  await accepted.flush();
  const sink = new LoggedEventSink(worker, id, run);
  const writer = new ResponseEventWriter(sink, await worker.beginRun(id, run));
  writer.inProgress(RESPONSE);
  for (const d of deltas) writer.delta('m', d);
  await sink.flush();
  return { writer, sink };
}

describe.each(backends.each)('RedisEventLog on %s', (_name, redis) => {
  beforeAll(() => {
    gateway = new RedisEventLog(redis.endpoint(), prefix);
    worker = new RedisEventLog(redis.endpoint(), prefix);
  });
  afterAll(async () => {
    await Promise.all([gateway.close(), worker.close()]);
  });

  it('a follower gets what was logged, then new events as they are written, and stops at the terminal one', async () => {
    const id = uniqueName('resp');
    const { writer, sink } = await queuedThenStarted(id, 1, ['a', 'b']);
    const f = follow(id);
    await until(() => f.seen.length === 5);
    expect(f.seen.map((e) => e.type)).toEqual(['response.created', 'response.queued', 'response.in_progress', 'response.output_text.delta', 'response.output_text.delta']);
    // Written while it waits: the notification wakes it (well before its one-second recheck).
    writer.delta('m', 'c');
    writer.finished({ ...RESPONSE, status: 'completed' });
    await sink.flush();
    expect(await f.done).toBe('finished');
    expect(f.seen.map((e) => e.sequence)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(f.seen.at(-1)?.frame).toMatch(/^event: response.completed\ndata: \{"type":"response.completed","sequence_number":6,/);
  });

  it('starting_after skips what the client already has', async () => {
    const id = uniqueName('resp');
    const { writer, sink } = await queuedThenStarted(id, 1, ['a', 'b', 'c']);
    writer.finished({ ...RESPONSE, status: 'completed' });
    await sink.flush();
    const f = follow(id, 3);
    expect(await f.done).toBe('finished');
    expect(f.seen.map((e) => e.sequence)).toEqual([4, 5, 6]);
  });

  it('a run started over: its earlier events are dropped; a client that saw some of them is told, one that joins later sees the new run only', async () => {
    const id = uniqueName('resp');
    await queuedThenStarted(id, 1, ['first run']);
    const sawRun1 = follow(id);
    await until(() => sawRun1.seen.length === 4);
    // A new run (another worker picked the job up): sequence numbers continue after the gateway's.
    expect(await worker.beginRun(id, 2)).toBe(2);
    const sink = new LoggedEventSink(worker, id, 2);
    const writer = new ResponseEventWriter(sink, 2);
    writer.inProgress(RESPONSE);
    writer.delta('m', 'second run');
    writer.finished({ ...RESPONSE, status: 'completed' });
    await sink.flush();
    expect(await sawRun1.done).toBe('restarted');
    // A follower that joins now reads only the gateway's events and the second run.
    const late = follow(id);
    expect(await late.done).toBe('finished');
    expect(late.seen.map((e) => [e.sequence, e.run === 0 ? 0 : 2])).toEqual([[0, 0], [1, 0], [2, 2], [3, 2], [4, 2]]);
  });

  it('ends when the response settles without a terminal event, when the client leaves, and on release', async () => {
    const settledId = uniqueName('resp');
    await queuedThenStarted(settledId, 1, []);
    let settled = false;
    const cancelled = follow(settledId, -1, () => Promise.resolve(settled));
    await until(() => cancelled.seen.length === 3);
    settled = true;
    expect(await cancelled.done).toBe('stopped'); // within one recheck interval

    const leaving = follow(settledId);
    await until(() => leaving.seen.length === 3);
    leaving.closed.abort();
    expect(await leaving.done).toBe('closed');

    const other = new RedisEventLog(redis.endpoint(), prefix);
    const ids = uniqueName('resp');
    await queuedThenStarted(ids, 1, []);
    const held = other.follow(ids, { startingAfter: -1, signal: new AbortController().signal, isSettled: () => Promise.resolve(false), onEvent: () => undefined });
    await new Promise((r) => setTimeout(r, 50));
    other.release();
    expect(await held).toBe('released');
    await other.close();
  });
});
