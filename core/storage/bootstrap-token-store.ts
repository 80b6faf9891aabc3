import { randomBytes } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { Database } from '../database/database.js';
import { hashSecret } from './key-store.js';
import { NODE_COLUMNS, newJoinToken, toNodeRecord, type NodeRecord, type NodeRow } from './node-store.js';

/** A token with which agents register their own nodes in one region and cluster. */
export interface BootstrapTokenRecord {
  readonly id: string;
  readonly region: string;
  readonly cluster: string;
  readonly description: string;
  /** null: never expires. */
  readonly expiresAt: Date | null;
  /** null: any number of nodes may join with it. */
  readonly maxUses: number | null;
  /** Nodes that joined with it (a node re-joining with the same token is not a new use). */
  readonly uses: number;
  readonly createdAt: Date;
  readonly revokedAt: Date | null;
}

export interface NewBootstrapToken {
  readonly region: string;
  readonly cluster: string;
  readonly description?: string;
  readonly expiresAt?: Date;
  readonly maxUses?: number;
}

/** What an agent registering itself declares (region and cluster come from its token). */
export interface SelfRegisteredNode {
  readonly id: string;
  readonly url: string;
  readonly engine: string;
  readonly models: readonly string[];
  readonly tokensPerSecond: number;
  readonly maxSequences: number;
}

/** Why a join was refused; each says so to the agent in plain words. */
export const JoinRefusal = {
  Unknown: 'unknown_token',
  Expired: 'expired',
  Revoked: 'revoked',
  UsedUp: 'used_up',
  NodeTaken: 'node_taken',
} as const;
export type JoinRefusal = (typeof JoinRefusal)[keyof typeof JoinRefusal];

export type JoinResult =
  | { readonly ok: true; readonly record: NodeRecord; readonly joinToken: string; readonly created: boolean }
  | { readonly ok: false; readonly reason: JoinRefusal; readonly message: string };

export interface BootstrapTokenStore {
  /** The secret is returned once; only its hash is kept. */
  create(token: NewBootstrapToken): Promise<{ record: BootstrapTokenRecord; secret: string }>;
  list(): Promise<BootstrapTokenRecord[]>;
  /** Revoked tokens admit no more joins; nodes that joined with them stay. undefined: no such token. */
  revoke(id: string): Promise<BootstrapTokenRecord | undefined>;
  /**
   * Registers (or re-registers) the node an agent declares, if `secret` is a live bootstrap token:
   * not revoked, not expired, and with a use left when the node is new to it. A node id already
   * registered by an operator, or self-registered in another region or cluster, is refused. The
   * node gets a fresh join token (its own credential) each time; a re-join is the same node
   * (same id, same drain state, same history).
   */
  join(secret: string, node: SelfRegisteredNode): Promise<JoinResult>;
}

interface TokenRow {
  id: string;
  region: string;
  cluster: string;
  description: string;
  expires_at: Date | null;
  max_uses: number | null;
  uses: number;
  created_at: Date;
  revoked_at: Date | null;
}

const COLUMNS = 'id, region, cluster, description, expires_at, max_uses, uses, created_at, revoked_at';

function toRecord(r: TokenRow): BootstrapTokenRecord {
  return {
    id: r.id, region: r.region, cluster: r.cluster, description: r.description, expiresAt: r.expires_at, maxUses: r.max_uses,
    uses: r.uses, createdAt: r.created_at, revokedAt: r.revoked_at,
  };
}

export class PgBootstrapTokenStore implements BootstrapTokenStore {
  constructor(private readonly db: Database) {}

  async create(t: NewBootstrapToken): Promise<{ record: BootstrapTokenRecord; secret: string }> {
    const secret = `sy-boot-${randomBytes(24).toString('base64url')}`;
    const id = `bt_${randomBytes(8).toString('hex')}`;
    const { rows } = await this.db.pool.query<TokenRow>(
      `INSERT INTO bootstrap_tokens (id, token_hash, region, cluster, description, expires_at, max_uses)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${COLUMNS}`,
      [id, hashSecret(secret), t.region, t.cluster, t.description ?? '', t.expiresAt ?? null, t.maxUses ?? null],
    );
    return { record: toRecord(rows[0] as TokenRow), secret };
  }

  async list(): Promise<BootstrapTokenRecord[]> {
    const { rows } = await this.db.pool.query<TokenRow>(`SELECT ${COLUMNS} FROM bootstrap_tokens ORDER BY created_at, id`);
    return rows.map(toRecord);
  }

  async revoke(id: string): Promise<BootstrapTokenRecord | undefined> {
    const { rows } = await this.db.pool.query<TokenRow>(
      `UPDATE bootstrap_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING ${COLUMNS}`,
      [id],
    );
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  async join(secret: string, node: SelfRegisteredNode): Promise<JoinResult> {
    const client = await this.db.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await this.joinIn(client, secret, node);
      await client.query(result.ok ? 'COMMIT' : 'ROLLBACK');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  private async joinIn(client: PoolClient, secret: string, node: SelfRegisteredNode): Promise<JoinResult> {
    const refuse = (reason: JoinRefusal, message: string): JoinResult => ({ ok: false, reason, message });
    // The token row is locked for the transaction: two agents joining with one token at once are
    // counted one after the other, so max_uses holds.
    const found = await client.query<TokenRow & { expired: boolean }>(
      `SELECT ${COLUMNS}, (expires_at IS NOT NULL AND expires_at <= now()) AS expired
       FROM bootstrap_tokens WHERE token_hash = $1 FOR UPDATE`,
      [hashSecret(secret)],
    );
    const token = found.rows[0];
    if (token === undefined) return refuse(JoinRefusal.Unknown, 'unknown bootstrap token');
    if (token.revoked_at !== null) return refuse(JoinRefusal.Revoked, `bootstrap token ${token.id} was revoked at ${token.revoked_at.toISOString()}`);
    if (token.expired) return refuse(JoinRefusal.Expired, `bootstrap token ${token.id} expired at ${token.expires_at?.toISOString() ?? ''}`);
    const existing = (
      await client.query<{ bootstrap_token_id: string | null; region: string; cluster: string }>(
        'SELECT bootstrap_token_id, region, cluster FROM nodes WHERE id = $1 FOR UPDATE',
        [node.id],
      )
    ).rows[0];
    if (existing !== undefined && existing.bootstrap_token_id === null) {
      return refuse(JoinRefusal.NodeTaken, `node id '${node.id}' is registered by an operator; choose another --node-id`);
    }
    if (existing !== undefined && (existing.region !== token.region || existing.cluster !== token.cluster)) {
      return refuse(JoinRefusal.NodeTaken, `node id '${node.id}' is registered in ${existing.region}/${existing.cluster}, not in this token's ${token.region}/${token.cluster}`);
    }
    const newUse = existing?.bootstrap_token_id !== token.id;
    if (newUse && token.max_uses !== null && token.uses >= token.max_uses) {
      return refuse(JoinRefusal.UsedUp, `bootstrap token ${token.id} is used up (${token.uses} of ${token.max_uses} nodes joined)`);
    }
    if (newUse) await client.query('UPDATE bootstrap_tokens SET uses = uses + 1 WHERE id = $1', [token.id]);
    const joinToken = newJoinToken();
    const { rows } = await client.query<NodeRow & { created: boolean }>(
      `INSERT INTO nodes (id, region, cluster, url, engine, models, tokens_per_second, max_sequences, join_token_hash, bootstrap_token_id, agent_seen_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
       ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, engine = EXCLUDED.engine, models = EXCLUDED.models,
         tokens_per_second = EXCLUDED.tokens_per_second, max_sequences = EXCLUDED.max_sequences,
         join_token_hash = EXCLUDED.join_token_hash, bootstrap_token_id = EXCLUDED.bootstrap_token_id,
         agent_seen_at = now(), updated_at = now()
       RETURNING ${NODE_COLUMNS}, (xmax = 0) AS created`,
      [node.id, token.region, token.cluster, node.url, node.engine, [...node.models], node.tokensPerSecond, node.maxSequences, hashSecret(joinToken), token.id],
    );
    const row = rows[0] as NodeRow & { created: boolean };
    return { ok: true, record: toNodeRecord(row), joinToken, created: row.created };
  }
}
