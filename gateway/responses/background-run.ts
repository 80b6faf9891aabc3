import { SwitchyardError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { TERMINAL_STATUSES, type ResponseStore } from '../../core/storage/response-store.js';
import type { UsageBuffer } from '../../core/storage/usage-buffer.js';
import type { RegionRoute } from '../../scheduler/fleet.js';
import { LoggedEventSink, type EventLog } from './response-event-log.js';
import { ResponseEventWriter } from './response-events.js';
import type { ResponseRunner, RunResult } from './response-runner.js';
import { toResponseObject } from './translate.js';
import { canContinue } from '../upstream/stream-continuation.js';

/** How often a background run saves its text so far (what a worker taking it over continues from). */
const PARTIAL_EVERY_MS = 500;

/** What one run of a background response needs; the same for BullMQ workers and the in-process queue. */
export interface BackgroundRunDeps {
  readonly region: string;
  /**
   * The region's route, looked up for every run: nodes registered after the worker started (the
   * usual order in a deployment) serve jobs as soon as the fleet knows them.
   */
  route(): readonly RegionRoute[];
  readonly store: ResponseStore;
  readonly runner: ResponseRunner;
  readonly usage: UsageBuffer;
  /** Where streamed background responses log their events. */
  readonly events: EventLog | undefined;
  readonly log: Logger;
}

/** Which run of the job this is: `made` earlier attempts, and whether no other follows a failure. */
export interface Attempt {
  readonly made: number;
  readonly last: boolean;
}

/** A failed attempt: `retry` says whether the queue should run the job again (after a backoff). */
export class AttemptFailed extends Error {
  constructor(
    message: string,
    readonly retry: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'AttemptFailed';
  }
}

/**
 * Runs a background response once. Exactly one result: the response moves queued → in_progress →
 * completed|failed by compare-and-set, so a run that finds it finished (or cancelled) does
 * nothing, and a run after a worker died runs it again from the start. Upstream failures (5xx)
 * throw a retryable AttemptFailed until the last attempt; client errors (4xx) and the last
 * attempt mark the response failed. Resolves with what became of it.
 */
export async function runBackgroundResponse(deps: BackgroundRunDeps, id: string, attempt: Attempt, signal: AbortSignal): Promise<string> {
  const { store, runner, log } = deps;
  const current = await store.get(id);
  if (current === undefined || TERMINAL_STATUSES.includes(current.status)) return 'skipped';
  const running = await store.transition(id, ['queued', 'in_progress'], { status: 'in_progress' });
  if (running === undefined) return 'skipped';
  const started = Date.now();
  const route = deps.route();
  // A response created with `stream: true` logs its events as it runs (see EventLog).
  let events: { writer: ResponseEventWriter; sink: LoggedEventSink } | undefined;
  try {
    let result: RunResult;
    if (running.streamed && deps.events !== undefined) {
      // A run that died mid-answer (its worker was killed) is continued, not started over: its
      // logged text is sent to a node as the start of the answer and the log goes on in the same
      // run, so followers see one stream and the tokens already generated are not paid twice.
      const resumed = canContinueOn(route, running.model) ? await deps.events.resume(id) : undefined;
      const run = resumed?.run ?? Date.now(); // tells this run's events from an earlier run's
      const sink = new LoggedEventSink(deps.events, id, run);
      const writer = new ResponseEventWriter(sink, resumed?.next ?? (await deps.events.beginRun(id, run)));
      events = { writer, sink };
      if (resumed !== undefined) log.info({ responseId: id, tokens: resumed.tokens }, 'continuing a background response where its last run stopped');
      result = await runner.stream(
        running,
        route,
        `job_${id}`,
        signal,
        () => {
          if (resumed !== undefined) return; // its start is in the log already
          writer.inProgress(toResponseObject(running));
          writer.textStarted(running.messageId);
        },
        (text) => writer.delta(running.messageId, text),
        resumed === undefined ? undefined : { text: resumed.text, tokens: resumed.tokens },
      );
    } else {
      // Streamed from the engine all the same, its text saved every PARTIAL_EVERY_MS: a worker that
      // takes the job over (this one died) continues from it instead of paying for it twice.
      const from = canContinueOn(route, running.model) && running.partial !== undefined && running.partial.text !== '' ? running.partial : undefined;
      if (from !== undefined) log.info({ responseId: id, tokens: from.tokens }, 'continuing a background response where its last run stopped');
      let text = from?.text ?? '';
      let tokens = from?.tokens ?? 0;
      let savedAt = Date.now();
      result = await runner.stream(
        running,
        route,
        `job_${id}`,
        signal,
        () => undefined,
        (delta) => {
          text += delta;
          tokens++;
          if (Date.now() - savedAt < PARTIAL_EVERY_MS) return;
          savedAt = Date.now();
          void store.transition(id, ['in_progress'], { partial: { text, tokens } }).catch(() => undefined);
        },
        from,
      );
    }
    const done = await store.transition(id, ['in_progress'], {
      partial: undefined,
      status: result.finishReason === 'length' ? 'incomplete' : 'completed',
      incompleteReason: result.finishReason === 'length' ? 'max_output_tokens' : null,
      outputText: result.text,
      usage: result.usage === undefined ? null : { input_tokens: result.usage.prompt_tokens, output_tokens: result.usage.completion_tokens },
      nodeId: result.nodeId,
    });
    deps.usage.push({
      id: `job_${id}_${attempt.made}`,
      requestId: id,
      tenantId: running.tenant === '' ? null : running.tenant,
      keyId: null,
      model: running.model,
      region: deps.region,
      nodeId: result.nodeId,
      promptTokens: result.usage?.prompt_tokens ?? 0,
      completionTokens: result.usage?.completion_tokens ?? 0,
      ttftMs: null,
      durationMs: Date.now() - started,
      status: 200,
      errorCode: null,
      createdAt: new Date(),
    });
    if (events !== undefined && done !== undefined) {
      events.writer.textDone(running.messageId, result.text);
      events.writer.finished(toResponseObject(done));
      // The response is complete either way: a log that could not be written is not a job failure.
      await events.sink.flush().catch((e: unknown) => log.warn({ responseId: id, err: (e as Error).message }, 'could not log the final events'));
    }
    return done === undefined ? 'superseded' : done.status;
  } catch (error) {
    if (signal.aborted) throw new AttemptFailed('cancelled', false);
    const err = error instanceof SwitchyardError ? error : undefined;
    const retryable = err === undefined || err.status >= 500;
    log.warn({ responseId: id, attempt: attempt.made + 1, err: (error as Error).message, retryable }, 'background response attempt failed');
    if (retryable && !attempt.last) throw new AttemptFailed((error as Error).message, true, { cause: error });
    const failed = await store.transition(id, ['in_progress'], {
      status: 'failed',
      error: { code: err?.code ?? 'server_error', message: (error as Error).message },
    });
    if (events !== undefined && failed !== undefined) {
      events.writer.failed(toResponseObject(failed), err?.code ?? 'server_error', (error as Error).message);
      await events.sink.flush().catch((e: unknown) => log.warn({ responseId: id, err: (e as Error).message }, 'could not log the failure event'));
    }
    throw new AttemptFailed((error as Error).message, false, { cause: error });
  }
}

/** Whether every node that may run `model` on this route continues an answer it is given. */
function canContinueOn(route: readonly RegionRoute[], model: string): boolean {
  const nodes = route.flatMap((hop) => hop.nodes.filter((n) => n.serves(model)));
  return nodes.length > 0 && nodes.every((n) => canContinue(n.spec.engine));
}
