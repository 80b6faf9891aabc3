import { UnrecoverableError, type Job, type Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { SwitchyardError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { TERMINAL_STATUSES, type ResponseStore } from '../../core/storage/response-store.js';
import type { UsageBuffer } from '../../core/storage/usage-buffer.js';
import type { RegionRoute } from '../../scheduler/fleet.js';
import { cancelChannel, responseWorkers, type ResponseJobData } from './background-jobs.js';
import { LoggedEventSink, ResponseEventLog } from './response-event-log.js';
import { ResponseEventWriter } from './response-events.js';
import type { ResponseRunner, RunResult } from './response-runner.js';
import { toResponseObject } from './translate.js';

export interface BackgroundWorkerOptions {
  readonly redisUrl: string;
  readonly redisPrefix: string;
  readonly region: string;
  readonly route: readonly RegionRoute[];
  readonly concurrency: number;
  /** How long a job's lock lives without renewal: a killed worker's job is picked up after this. */
  readonly lockMs: number;
  readonly store: ResponseStore;
  readonly runner: ResponseRunner;
  readonly usage: UsageBuffer;
  readonly log: Logger;
}

/**
 * Runs background responses from the region's BullMQ queue. Each job takes capacity through the
 * worker's own capacity gate (same ledger as the gateways, the response's priority class, batch
 * by default), so jobs wait for capacity instead of overloading nodes.
 *
 * Exactly one result: the response moves queued → in_progress → completed|failed by
 * compare-and-set. A job run again after its worker died (BullMQ's stalled-job recovery) finds
 * the response in progress and runs it again; a run that finds it finished (or cancelled) does
 * nothing. Upstream failures are retried by BullMQ with exponential backoff; client errors (4xx)
 * and the last attempt fail the response.
 */
export class BackgroundWorker {
  private readonly connection: Redis;
  private readonly subscriber: Redis;
  private readonly workers: Worker<ResponseJobData, string>[];
  private readonly events: ResponseEventLog;

  constructor(private readonly opts: BackgroundWorkerOptions) {
    this.connection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
    this.events = new ResponseEventLog(opts.redisUrl, opts.redisPrefix);
    this.subscriber = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
    this.workers = responseWorkers({ ...opts, connection: this.connection }, (job, _token, signal) => this.process(job, signal));
    for (const worker of this.workers) worker.on('error', (err) => opts.log.warn({ err: err.message }, 'background worker error'));
  }

  async start(): Promise<void> {
    await this.subscriber.subscribe(cancelChannel(this.opts.redisPrefix));
    this.subscriber.on('message', (_channel: string, responseId: string) => {
      // Only the Worker instance running the job knows it: ask each.
      if (this.workers.some((w) => w.cancelJob(responseId, 'cancelled by the client'))) this.opts.log.info({ responseId }, 'background response cancelled while running');
    });
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));
  }

  private async process(job: Job<ResponseJobData, string>, signal: AbortSignal | undefined): Promise<string> {
    const { store, runner, log } = this.opts;
    const id = job.data.responseId;
    const current = await store.get(id);
    if (current === undefined || TERMINAL_STATUSES.includes(current.status)) return 'skipped';
    const running = await store.transition(id, ['queued', 'in_progress'], { status: 'in_progress' });
    if (running === undefined) return 'skipped';
    const abort = signal ?? new AbortController().signal;
    const started = Date.now();
    // A response created with `stream: true` logs its events as it runs (see ResponseEventLog).
    let events: { writer: ResponseEventWriter; sink: LoggedEventSink } | undefined;
    try {
      let result: RunResult;
      if (running.streamed) {
        const run = Date.now(); // tells this run's events from an earlier run's
        const sink = new LoggedEventSink(this.events, id, run);
        const writer = new ResponseEventWriter(sink, await this.events.beginRun(id, run));
        events = { writer, sink };
        result = await runner.stream(
          running,
          this.opts.route,
          `job_${id}`,
          abort,
          () => {
            writer.inProgress(toResponseObject(running));
            writer.textStarted(running.messageId);
          },
          (text) => writer.delta(running.messageId, text),
        );
      } else {
        result = await runner.complete(running, this.opts.route, `job_${id}`, abort);
      }
      const done = await store.transition(id, ['in_progress'], {
        status: result.finishReason === 'length' ? 'incomplete' : 'completed',
        incompleteReason: result.finishReason === 'length' ? 'max_output_tokens' : null,
        outputText: result.text,
        usage: result.usage === undefined ? null : { input_tokens: result.usage.prompt_tokens, output_tokens: result.usage.completion_tokens },
        nodeId: result.nodeId,
      });
      this.opts.usage.push({
        id: `job_${id}_${job.attemptsMade}`,
        requestId: id,
        tenantId: running.tenant === '' ? null : running.tenant,
        keyId: null,
        model: running.model,
        region: this.opts.region,
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
      if (abort.aborted) throw new UnrecoverableError('cancelled');
      const err = error instanceof SwitchyardError ? error : undefined;
      const retryable = err === undefined || err.status >= 500;
      const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      log.warn({ responseId: id, attempt: job.attemptsMade + 1, err: (error as Error).message, retryable }, 'background response attempt failed');
      if (retryable && !last) throw error;
      const failed = await store.transition(id, ['in_progress'], {
        status: 'failed',
        error: { code: err?.code ?? 'server_error', message: (error as Error).message },
      });
      if (events !== undefined && failed !== undefined) {
        events.writer.failed(toResponseObject(failed), err?.code ?? 'server_error', (error as Error).message);
        await events.sink.flush().catch((e: unknown) => log.warn({ responseId: id, err: (e as Error).message }, 'could not log the failure event'));
      }
      throw new UnrecoverableError((error as Error).message);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
    await this.subscriber.quit().catch(() => this.subscriber.disconnect());
    await this.events.close();
    await this.connection.quit().catch(() => this.connection.disconnect());
  }
}
