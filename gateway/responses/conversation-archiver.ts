import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from '../../core/logger.js';
import type { ResponseStore } from '../../core/storage/response-store.js';

/**
 * Moves idle conversations out of the hot store into Postgres: every second (node-cron), finished
 * responses untouched for `idleMs` are written to Postgres and dropped from Redis (or memory). A
 * later `previous_response_id` or retrieve reads them back transparently. Runs in the worker when
 * Redis holds the store, in the serving process when its memory does.
 */
export class ConversationArchiver {
  private task: ScheduledTask | undefined;
  private running = false;
  moved = 0;

  constructor(
    private readonly store: ResponseStore,
    private readonly idleMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.task = cron.schedule('* * * * * *', () => void this.sweep(), { name: 'conversation-archiver', noOverlap: true });
  }

  async sweep(): Promise<number> {
    if (this.running) return 0;
    this.running = true;
    try {
      const n = await this.store.archiveIdle(this.idleMs);
      this.moved += n;
      if (n > 0) this.log.debug({ moved: n }, 'idle responses archived to Postgres');
      return n;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'archiving idle responses failed; retrying next sweep');
      return 0;
    } finally {
      this.running = false;
    }
  }

  async stop(): Promise<void> {
    await this.task?.stop();
    await this.task?.destroy();
  }
}
