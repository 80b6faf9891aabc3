import type { Logger } from '../../core/logger.js';
import { closeRedis, connectRedis, duplicateRedis, type RedisClient, type RedisTarget } from '../../core/redis-connection.js';
import type { EventSink } from './response-events.js';

/** Types that end a response's event stream. */
const TERMINAL_EVENTS = new Set(['response.completed', 'response.incomplete', 'response.failed']);
/** A log outlives its response by this long: enough to resume a stream, not to keep it. */
const LOG_TTL_MS = 60 * 60 * 1000;
/** Entries read per XRANGE while catching up. */
const READ_BATCH = 512;
/** How often a follower checks on its own, for a notification lost (pub/sub is at most once). */
const RECHECK_MS = 1000;

/** One logged event: the SSE frame as written to clients, its type and sequence number. */
export interface LoggedEvent {
  readonly frame: string;
  readonly type: string;
  readonly sequence: number;
  /** The run that wrote it: 0 the gateway (created, queued), else the worker run's id (its start time, ms). */
  readonly run: number;
}

export type FollowEnd = 'finished' | 'stopped' | 'closed' | 'restarted' | 'released';

export interface FollowOptions {
  readonly startingAfter: number;
  readonly signal: AbortSignal;
  /** Asked when nothing new arrived for a while: true once the response can log nothing more. */
  readonly isSettled: () => Promise<boolean>;
  readonly onEvent: (event: LoggedEvent) => void;
}

/** An entry as read back from a log: its position (the follow cursor) and the event. */
export type LogEntry = readonly [position: string, event: LoggedEvent];

/**
 * The events of background responses created with `stream: true`, so that a client can watch one
 * run on a worker and resume after a disconnect (`GET /v1/responses/{id}?stream=true&
 * starting_after=N`), like OpenAI's background streaming. Each response has a log of its SSE
 * frames (the gateway writes `response.created` and `response.queued`, the worker the rest);
 * writers announce new frames and followers read from where they are, so a notification that
 * arrives early, late or twice changes nothing.
 *
 * A job run again (stalled worker, retry) first deletes the frames of the run before it: a client
 * that had already received some of those gets its stream ended with an `error` event rather
 * than two runs' text stitched together (`restarted`); the final response is in `retrieve`.
 *
 * Two backends share the follow loop below: Redis streams (every gateway and worker of a region)
 * and this process's memory (`switchyard start` without Redis).
 */
export abstract class EventLog {
  private readonly waiting = new Map<string, Set<() => void>>();
  private released = false;

  /** Appends frames in order; resolves once they are stored and announced. */
  abstract append(id: string, run: number, events: readonly { frame: string; type: string; sequence: number }[]): Promise<void>;
  /** Deletes a response's events (the response was deleted). */
  abstract drop(id: string): Promise<void>;
  /**
   * Starts run `run`: drops the frames of earlier job runs (the gateway's run 0 stays) and returns
   * the sequence number the run's first event takes.
   */
  abstract beginRun(id: string, run: number): Promise<number>;
  /** Up to `count` entries after `position` (from the start when undefined), in order. */
  protected abstract readAfter(id: string, position: string | undefined, count: number): Promise<readonly LogEntry[]>;
  /** Resolves once this process hears announcements (a subscription, where there is one). */
  protected abstract listen(): Promise<void>;
  abstract close(): Promise<void>;

  /**
   * Where a job run that died stopped: its run id, the sequence its next event takes, and the
   * text it had logged (its deltas), so that the run taking over continues it instead of starting
   * over. Undefined when no job run logged any text or the last one finished.
   */
  async resume(id: string): Promise<{ run: number; next: number; text: string; tokens: number } | undefined> {
    let position: string | undefined;
    let run = 0;
    let next = 0;
    let text = '';
    let tokens = 0;
    let finished = false;
    for (;;) {
      const entries = await this.readAfter(id, position, READ_BATCH);
      for (const [at, e] of entries) {
        position = at;
        next = Math.max(next, e.sequence + 1);
        if (e.run === 0) continue;
        if (e.run !== run) {
          // A later run replaced an earlier one (its events were dropped, or are being): follow it.
          run = e.run;
          text = '';
          tokens = 0;
          finished = false;
        }
        if (TERMINAL_EVENTS.has(e.type)) finished = true;
        if (e.type === 'response.output_text.delta') {
          const delta = deltaOf(e.frame);
          if (delta !== undefined) {
            text += delta;
            tokens++;
          }
        }
      }
      if (entries.length < READ_BATCH) break;
    }
    return run === 0 || finished || text === '' ? undefined : { run, next, text, tokens };
  }

  /** Wakes the followers of `id`: new frames were announced. */
  protected announced(id: string): void {
    for (const wake of this.waiting.get(id) ?? []) wake();
  }

  /**
   * Sends the response's logged events after `startingAfter`, then new ones as they are written,
   * until a terminal event, `isSettled`, the signal, or a restarted run ends it.
   */
  async follow(id: string, opts: FollowOptions): Promise<FollowEnd> {
    const wakeUps = this.waiting.get(id) ?? new Set<() => void>();
    this.waiting.set(id, wakeUps);
    let wake: () => void = () => undefined;
    const onWake = (): void => wake();
    wakeUps.add(onWake);
    const onAbort = (): void => wake();
    opts.signal.addEventListener('abort', onAbort, { once: true });
    try {
      await this.listen();
      let cursor: string | undefined;
      let run = -1;
      let sentAny = false;
      for (;;) {
        // Registered before reading, so a frame written during the read still wakes us.
        const woken = new Promise<void>((resolve) => (wake = resolve));
        let readSome = false;
        for (;;) {
          const entries = await this.readAfter(id, cursor, READ_BATCH);
          for (const [position, e] of entries) {
            cursor = position;
            if (e.run !== 0 && run > 0 && e.run !== run && sentAny) return 'restarted';
            if (e.run !== 0) run = e.run;
            if (e.sequence <= opts.startingAfter) continue;
            if (opts.signal.aborted) return 'closed';
            opts.onEvent(e);
            sentAny ||= e.run !== 0;
            if (TERMINAL_EVENTS.has(e.type)) return 'finished';
          }
          readSome ||= entries.length > 0;
          if (entries.length < READ_BATCH) break;
        }
        if (opts.signal.aborted) return 'closed';
        if (this.released) return 'released';
        if (!readSome && (await opts.isSettled())) return 'stopped';
        const timer = setTimeout(onWake, RECHECK_MS);
        await woken;
        clearTimeout(timer);
      }
    } finally {
      opts.signal.removeEventListener('abort', onAbort);
      wakeUps.delete(onWake);
      if (wakeUps.size === 0) this.waiting.delete(id);
    }
  }

  /** Ends every follow (`released`): the process is shutting down; clients resume elsewhere. */
  release(): void {
    this.released = true;
    for (const wakeUps of this.waiting.values()) for (const wake of wakeUps) wake();
  }
}

/** The log in Redis: a stream per response, announced on one channel every follower's process subscribes to. */
export class RedisEventLog extends EventLog {
  private readonly redis: RedisClient;
  private subscriber: RedisClient | undefined;
  private subscribed: Promise<void> | undefined;

  constructor(
    redis: RedisTarget,
    private readonly prefix: string,
    private readonly log?: Logger,
  ) {
    super();
    this.redis = connectRedis(redis, 'event-log', log, 'queue');
  }

  /** One key per response: its MULTI (XADDs, PEXPIRE, a PUBLISH) stays in one Cluster slot. */
  private key(id: string): string {
    return `${this.prefix}resp:events:${id}`;
  }

  private get channel(): string {
    return `${this.prefix}resp:events`;
  }

  async append(id: string, run: number, events: readonly { frame: string; type: string; sequence: number }[]): Promise<void> {
    if (events.length === 0) return;
    const key = this.key(id);
    const tx = this.redis.multi();
    for (const e of events) tx.xadd(key, '*', 'r', run, 's', e.sequence, 't', e.type, 'f', e.frame);
    tx.pexpire(key, LOG_TTL_MS);
    tx.publish(this.channel, id);
    await tx.exec();
  }

  async drop(id: string): Promise<void> {
    await this.redis.del(this.key(id));
  }

  async beginRun(id: string, run: number): Promise<number> {
    const entries = await this.redis.xrange(this.key(id), '-', '+');
    const stale: string[] = [];
    let next = 0;
    for (const [entryId, fields] of entries) {
      const e = parseEntry(fields);
      if (e.run !== 0 && e.run !== run) stale.push(entryId);
      else next = Math.max(next, e.sequence + 1);
    }
    if (stale.length > 0) await this.redis.xdel(this.key(id), ...stale);
    // A job that waited long in the queue: its log lives an hour from when it starts running.
    await this.redis.pexpire(this.key(id), LOG_TTL_MS);
    return next;
  }

  protected async readAfter(id: string, position: string | undefined, count: number): Promise<readonly LogEntry[]> {
    const entries = await this.redis.xrange(this.key(id), position === undefined ? '-' : `(${position}`, '+', 'COUNT', count);
    return entries.map(([entryId, fields]) => [entryId, parseEntry(fields)] as const);
  }

  /** One subscription per process, opened by the first follower. */
  protected listen(): Promise<void> {
    if (this.subscribed !== undefined) return this.subscribed;
    const sub = duplicateRedis(this.redis, 'event-log-subscriber', this.log);
    this.subscriber = sub;
    sub.on('message', (_channel: string, id: string) => this.announced(id));
    this.subscribed = sub.subscribe(this.channel).then(
      () => undefined,
      (err: unknown) => {
        // Not cached: the next follower tries again.
        this.subscribed = undefined;
        this.subscriber = undefined;
        sub.disconnect();
        throw err;
      },
    );
    return this.subscribed;
  }

  async close(): Promise<void> {
    this.release();
    await closeRedis(this.subscriber);
    await closeRedis(this.redis);
  }
}

/**
 * The log in this process's memory, for `switchyard start` without Redis: the same semantics
 * (runs, restarts, an hour's life), gone when the process stops.
 */
export class MemoryEventLog extends EventLog {
  private readonly logs = new Map<string, { entries: LoggedEvent[]; positions: number[]; expiry: NodeJS.Timeout | undefined }>();
  private nextPosition = 1;

  private log(id: string): { entries: LoggedEvent[]; positions: number[]; expiry: NodeJS.Timeout | undefined } {
    let log = this.logs.get(id);
    if (log === undefined) {
      log = { entries: [], positions: [], expiry: undefined };
      this.logs.set(id, log);
    }
    clearTimeout(log.expiry);
    log.expiry = setTimeout(() => this.logs.delete(id), LOG_TTL_MS);
    log.expiry.unref();
    return log;
  }

  append(id: string, run: number, events: readonly { frame: string; type: string; sequence: number }[]): Promise<void> {
    if (events.length === 0) return Promise.resolve();
    const log = this.log(id);
    for (const e of events) {
      log.entries.push({ ...e, run });
      log.positions.push(this.nextPosition++);
    }
    this.announced(id);
    return Promise.resolve();
  }

  drop(id: string): Promise<void> {
    clearTimeout(this.logs.get(id)?.expiry);
    this.logs.delete(id);
    return Promise.resolve();
  }

  beginRun(id: string, run: number): Promise<number> {
    const log = this.log(id);
    let next = 0;
    const keep = log.entries.map((e) => e.run === 0 || e.run === run);
    log.entries.forEach((e, i) => {
      if (keep[i] === true) next = Math.max(next, e.sequence + 1);
    });
    log.positions = log.positions.filter((_, i) => keep[i]);
    log.entries = log.entries.filter((_, i) => keep[i]);
    return Promise.resolve(next);
  }

  protected readAfter(id: string, position: string | undefined, count: number): Promise<readonly LogEntry[]> {
    const log = this.logs.get(id);
    if (log === undefined) return Promise.resolve([]);
    const after = position === undefined ? 0 : Number(position);
    const out: LogEntry[] = [];
    for (let i = 0; i < log.entries.length && out.length < count; i++) {
      const at = log.positions[i] as number;
      if (at > after) out.push([String(at), log.entries[i] as LoggedEvent]);
    }
    return Promise.resolve(out);
  }

  protected listen(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.release();
    for (const log of this.logs.values()) clearTimeout(log.expiry);
    this.logs.clear();
    return Promise.resolve();
  }
}

function deltaOf(frame: string): string | undefined {
  const line = frame.split('\n').find((l) => l.startsWith('data: '));
  if (line === undefined) return undefined;
  try {
    const data = JSON.parse(line.slice(6)) as { delta?: unknown };
    return typeof data.delta === 'string' ? data.delta : undefined;
  } catch {
    return undefined;
  }
}

/** Buffers a run's frames and appends them in order, one Redis round trip per event-loop turn. */
export class LoggedEventSink implements EventSink {
  private pending: { frame: string; type: string; sequence: number }[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private scheduled = false;
  private failure: Error | undefined;

  constructor(
    private readonly log: EventLog,
    private readonly id: string,
    private readonly run: number,
  ) {}

  event(frame: string, type: string, sequence: number): void {
    this.pending.push({ frame, type, sequence });
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const batch = this.pending;
      this.pending = [];
      this.flushing = this.flushing.then(() =>
        this.log.append(this.id, this.run, batch).catch((err: unknown) => {
          this.failure ??= err as Error;
        }),
      );
    });
  }

  /** Resolves once every frame given so far is in the log; rejects if an append failed. */
  async flush(): Promise<void> {
    while (this.scheduled || this.pending.length > 0) await new Promise((r) => setImmediate(r));
    await this.flushing;
    if (this.failure !== undefined) throw this.failure;
  }
}

function parseEntry(fields: string[]): LoggedEvent {
  let frame = '';
  let type = '';
  let sequence = -1;
  let run = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const v = fields[i + 1] as string;
    switch (fields[i]) {
      case 'f':
        frame = v;
        break;
      case 't':
        type = v;
        break;
      case 's':
        sequence = Number(v);
        break;
      case 'r':
        run = Number(v);
        break;
    }
  }
  return { frame, type, sequence, run };
}
