import type { JobQueue } from './background-jobs.js';
import { AttemptFailed, runBackgroundResponse, type BackgroundRunDeps } from './background-run.js';

export interface InProcessJobsOptions {
  /** Responses run at once (each still waits for fleet capacity in the ledger). */
  readonly concurrency: number;
  /** Runs of a response before it fails for good. */
  readonly attempts: number;
  /** First retry delay; it doubles per attempt, as BullMQ's exponential backoff does. */
  readonly backoffMs?: number;
}

interface Pending {
  readonly id: string;
  readonly made: number;
}

/**
 * Background responses run inside this process, for `switchyard start` without Redis: the same
 * runBackgroundResponse as `switchyard worker` (same capacity gate, batch priority, retries with
 * exponential backoff), fed from a FIFO in memory instead of a BullMQ queue. Not durable: what is
 * waiting or running when the process stops is marked failed, and nothing survives a restart.
 */
export class InProcessJobs implements JobQueue {
  private readonly waiting: Pending[] = [];
  private readonly running = new Map<string, AbortController>();
  /** Retries waiting out their backoff, with the response each is for. */
  private readonly retries = new Map<NodeJS.Timeout, string>();
  private readonly settled = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly deps: BackgroundRunDeps,
    private readonly opts: InProcessJobsOptions,
  ) {}

  enqueue(responseId: string): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the in-process job queue is closed'));
    this.waiting.push({ id: responseId, made: 0 });
    this.pump();
    return Promise.resolve();
  }

  private pump(): void {
    while (!this.closed && this.running.size < this.opts.concurrency) {
      const next = this.waiting.shift();
      if (next === undefined) return;
      this.start(next);
    }
  }

  private start(job: Pending): void {
    const abort = new AbortController();
    this.running.set(job.id, abort);
    const attempt = { made: job.made, last: job.made + 1 >= this.opts.attempts };
    const done = runBackgroundResponse(this.deps, job.id, attempt, abort.signal).then(
      () => undefined,
      (error: unknown) => {
        if (!(error instanceof AttemptFailed) || !error.retry || this.closed) return;
        const delay = (this.opts.backoffMs ?? 1000) * 2 ** job.made;
        const timer = setTimeout(() => {
          this.retries.delete(timer);
          this.waiting.push({ id: job.id, made: job.made + 1 });
          this.pump();
        }, delay);
        this.retries.set(timer, job.id);
      },
    );
    const tracked = done.finally(() => {
      this.running.delete(job.id);
      this.settled.delete(tracked);
      this.pump();
    });
    this.settled.add(tracked);
  }

  cancel(responseId: string): Promise<void> {
    const i = this.waiting.findIndex((p) => p.id === responseId);
    if (i !== -1) this.waiting.splice(i, 1);
    this.running.get(responseId)?.abort();
    return Promise.resolve();
  }

  /** This process is its own worker: always available while open. */
  unavailable(): string | undefined {
    return undefined;
  }

  list(limit: number): Promise<Array<{ id: string; state: string }>> {
    const out = [
      ...[...this.running.keys()].map((id) => ({ id, state: 'active' })),
      ...this.waiting.map((p) => ({ id: p.id, state: 'waiting' })),
      ...[...this.retries.values()].map((id) => ({ id, state: 'delayed' })),
    ];
    return Promise.resolve(out.slice(0, limit));
  }

  workerCount(): number {
    return this.closed ? 0 : 1;
  }

  /** Aborts what runs, and marks it and everything still waiting failed: nothing else would run it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const orphaned = [...this.waiting.map((p) => p.id), ...this.running.keys(), ...this.retries.values()];
    this.waiting.length = 0;
    for (const timer of this.retries.keys()) clearTimeout(timer);
    this.retries.clear();
    for (const abort of this.running.values()) abort.abort();
    await Promise.all(this.settled);
    const error = { code: 'server_error', message: 'The process running this background response stopped before it finished.' };
    await Promise.all(orphaned.map((id) => this.deps.store.transition(id, ['queued', 'in_progress'], { status: 'failed', error }).catch(() => undefined)));
  }
}
