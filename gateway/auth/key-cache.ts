import type { Logger } from '../../core/logger.js';
import { hashSecret, type ApiKeyRecord, type KeyStore } from '../../core/storage/key-store.js';

interface Entry {
  readonly record: ApiKeyRecord | undefined;
  readonly expiresAt: number;
}

/**
 * API key lookups without touching Postgres on the hot path. Lookups are cached by the secret's
 * hash for `ttlMs` (unknown keys too, so a flood of bad keys cannot reach the database), and
 * concurrent misses for one key share one query. Revocations reach this cache within about
 * `pollMs`: every gateway asks the store for keys revoked since its last look, one small query per
 * second per process rather than per request.
 */
export class KeyCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<ApiKeyRecord | undefined>>();
  private timer: NodeJS.Timeout | undefined;
  private lastPoll: Date;
  private polling = false;

  constructor(
    private readonly store: KeyStore,
    private readonly opts: { ttlMs: number; pollMs: number; maxEntries?: number; log: Logger; now?: () => number },
  ) {
    this.lastPoll = new Date(this.now());
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  start(): void {
    this.timer = setInterval(() => void this.pollRevocations(), this.opts.pollMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** A fresh cached lookup (`record` undefined: known to be invalid), or undefined on a miss. */
  cached(secret: string): { readonly record: ApiKeyRecord | undefined } | undefined {
    const hit = this.entries.get(hashSecret(secret));
    return hit !== undefined && hit.expiresAt > this.now() ? hit : undefined;
  }

  async resolve(secret: string): Promise<ApiKeyRecord | undefined> {
    const hash = hashSecret(secret);
    const hit = this.entries.get(hash);
    if (hit !== undefined && hit.expiresAt > this.now()) return hit.record;
    let pending = this.inflight.get(hash);
    if (pending === undefined) {
      pending = this.store.findBySecret(secret).then(
        (record) => {
          this.remember(hash, record);
          return record;
        },
        (err: unknown) => {
          // A database outage must not lock out keys already known: serve the stale entry.
          this.opts.log.warn({ err }, 'key lookup failed');
          if (hit !== undefined) return hit.record;
          throw err;
        },
      );
      pending = pending.finally(() => this.inflight.delete(hash));
      this.inflight.set(hash, pending);
    }
    return pending;
  }

  private remember(hash: string, record: ApiKeyRecord | undefined): void {
    if (this.entries.size >= (this.opts.maxEntries ?? 100_000)) this.entries.clear();
    this.entries.set(hash, { record, expiresAt: this.now() + this.opts.ttlMs });
  }

  /** Drops every cached entry of the given key ids (revoked elsewhere). */
  evict(keyIds: ReadonlySet<string>): void {
    if (keyIds.size === 0) return;
    for (const [hash, entry] of this.entries) if (entry.record && keyIds.has(entry.record.id)) this.entries.delete(hash);
  }

  async pollRevocations(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    // Overlap the window by a second: a revocation committed just before our last look is not missed.
    const since = new Date(this.lastPoll.getTime() - 1000);
    const at = new Date(this.now());
    try {
      const revoked = await this.store.revokedSince(since);
      this.evict(new Set(revoked));
      this.lastPoll = at;
    } catch (err) {
      this.opts.log.warn({ err }, 'revocation poll failed');
    } finally {
      this.polling = false;
    }
  }
}
