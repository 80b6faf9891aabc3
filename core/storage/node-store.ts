import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Database } from '../database/database.js';
import { hashSecret } from './key-store.js';
import { PgBootstrapTokenStore, type BootstrapTokenStore } from './bootstrap-token-store.js';

/** A GPU node registered by an operator (nodes of regions.yaml are not stored here). */
export interface NodeRecord {
  readonly id: string;
  readonly region: string;
  readonly cluster: string;
  readonly url: string;
  readonly engine: string;
  readonly models: readonly string[];
  readonly tokensPerSecond: number;
  readonly maxSequences: number;
  readonly draining: boolean;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** The bootstrap token the node's agent registered it with; null: registered by an operator. */
  readonly bootstrapTokenId?: string | null;
  /** When a scheduler last had the node's agent connected; null: never. */
  readonly agentSeenAt?: Date | null;
}

export type NewNode = Omit<NodeRecord, 'draining' | 'createdAt' | 'updatedAt' | 'bootstrapTokenId' | 'agentSeenAt'>;

export interface Registration {
  readonly record: NodeRecord;
  /** The new join token, returned once (only its hash is kept); undefined when the node kept its own. */
  readonly joinToken: string | undefined;
  /** False when the id was registered already (its spec is updated in place). */
  readonly created: boolean;
}

export interface NodeStore {
  /**
   * Registers a node, or updates the spec of the node registered with that id. Idempotent: an
   * existing node keeps its join token (its running agent stays connected) unless `rotateToken`
   * asks for a new one, which replaces the old at once.
   */
  register(node: NewNode, opts?: { readonly rotateToken?: boolean }): Promise<Registration>;
  list(): Promise<NodeRecord[]>;
  get(id: string): Promise<NodeRecord | undefined>;
  setDraining(id: string, draining: boolean): Promise<NodeRecord | undefined>;
  remove(id: string): Promise<boolean>;
  /** True when the node exists and the token is its join token (compared in constant time). */
  verifyJoinToken(id: string, token: string): Promise<boolean>;
  /** Nodes changed (registered, drained, resumed) since `since`, for gateways' polling. */
  changedSince(since: Date): Promise<NodeRecord[]>;
  /** Records that a scheduler has these nodes' agents connected now (`agent_seen_at`; not `updated_at`). */
  touchAgents(ids: readonly string[]): Promise<void>;
  /**
   * Removes self-registered nodes whose agent no scheduler has seen for `goneForMs` (a scaled-down
   * Deployment's pods), except `connected`; returns the ids removed. Operator-registered nodes stay.
   */
  removeGhosts(goneForMs: number, connected: readonly string[]): Promise<string[]>;
  /** Tokens with which agents register their own nodes. */
  readonly bootstrapTokens: BootstrapTokenStore;
}

/** A new join token (the node's own credential); only its hash is stored. */
export function newJoinToken(): string {
  return `sy-join-${randomBytes(24).toString('base64url')}`;
}

export interface NodeRow {
  id: string;
  region: string;
  cluster: string;
  url: string;
  engine: string;
  models: string[];
  tokens_per_second: number;
  max_sequences: number;
  draining: boolean;
  created_at: Date;
  updated_at: Date;
  bootstrap_token_id: string | null;
  agent_seen_at: Date | null;
}
type Row = NodeRow;

export const NODE_COLUMNS = 'id, region, cluster, url, engine, models, tokens_per_second, max_sequences, draining, created_at, updated_at, bootstrap_token_id, agent_seen_at';
const COLUMNS = NODE_COLUMNS;

export function toNodeRecord(r: NodeRow): NodeRecord {
  return {
    id: r.id,
    region: r.region,
    cluster: r.cluster,
    url: r.url,
    engine: r.engine,
    models: r.models,
    tokensPerSecond: Number(r.tokens_per_second),
    maxSequences: r.max_sequences,
    draining: r.draining,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    bootstrapTokenId: r.bootstrap_token_id,
    agentSeenAt: r.agent_seen_at,
  };
}
const toRecord = toNodeRecord;

/** The node registry in Postgres (or the embedded PGlite). */
export class PgNodeStore implements NodeStore {
  readonly bootstrapTokens: BootstrapTokenStore;

  constructor(private readonly db: Database) {
    this.bootstrapTokens = new PgBootstrapTokenStore(db);
  }

  async register(node: NewNode, opts: { readonly rotateToken?: boolean } = {}): Promise<Registration> {
    const joinToken = newJoinToken();
    // One statement, so two registrations racing for an id cannot both "create" it; xmax = 0
    // marks a row this statement inserted rather than updated.
    const { rows } = await this.db.pool.query<Row & { created: boolean }>(
      `INSERT INTO nodes (id, region, cluster, url, engine, models, tokens_per_second, max_sequences, join_token_hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (id) DO UPDATE SET region = EXCLUDED.region, cluster = EXCLUDED.cluster, url = EXCLUDED.url,
         engine = EXCLUDED.engine, models = EXCLUDED.models, tokens_per_second = EXCLUDED.tokens_per_second,
         max_sequences = EXCLUDED.max_sequences, updated_at = now(),
         join_token_hash = CASE WHEN $10::boolean THEN EXCLUDED.join_token_hash ELSE nodes.join_token_hash END
       RETURNING ${COLUMNS}, (xmax = 0) AS created`,
      [node.id, node.region, node.cluster, node.url, node.engine, node.models, node.tokensPerSecond, node.maxSequences, hashSecret(joinToken), opts.rotateToken === true],
    );
    const row = rows[0] as Row & { created: boolean };
    const issued = row.created || opts.rotateToken === true;
    return { record: toRecord(row), joinToken: issued ? joinToken : undefined, created: row.created };
  }

  async list(): Promise<NodeRecord[]> {
    const { rows } = await this.db.pool.query<Row>(`SELECT ${COLUMNS} FROM nodes ORDER BY region, cluster, id`);
    return rows.map(toRecord);
  }

  async get(id: string): Promise<NodeRecord | undefined> {
    const { rows } = await this.db.pool.query<Row>(`SELECT ${COLUMNS} FROM nodes WHERE id = $1`, [id]);
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  async setDraining(id: string, draining: boolean): Promise<NodeRecord | undefined> {
    const { rows } = await this.db.pool.query<Row>(
      `UPDATE nodes SET draining = $2, updated_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
      [id, draining],
    );
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  async remove(id: string): Promise<boolean> {
    const res = await this.db.pool.query('DELETE FROM nodes WHERE id = $1', [id]);
    return (res.rowCount ?? 0) > 0;
  }

  async verifyJoinToken(id: string, token: string): Promise<boolean> {
    const { rows } = await this.db.pool.query<{ join_token_hash: string | null }>('SELECT join_token_hash FROM nodes WHERE id = $1', [id]);
    const stored = rows[0]?.join_token_hash;
    if (stored == null) return false;
    const given = Buffer.from(hashSecret(token));
    const want = Buffer.from(stored);
    return given.length === want.length && timingSafeEqual(given, want);
  }

  async changedSince(since: Date): Promise<NodeRecord[]> {
    const { rows } = await this.db.pool.query<Row>(`SELECT ${COLUMNS} FROM nodes WHERE updated_at > $1`, [since]);
    return rows.map(toRecord);
  }

  async touchAgents(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.db.pool.query('UPDATE nodes SET agent_seen_at = now() WHERE id = ANY($1::text[])', [ids]);
  }

  async removeGhosts(goneForMs: number, connected: readonly string[]): Promise<string[]> {
    // A node self-registered but never seen counts from its registration.
    const { rows } = await this.db.pool.query<{ id: string }>(
      `DELETE FROM nodes WHERE bootstrap_token_id IS NOT NULL AND NOT (id = ANY($2::text[]))
         AND COALESCE(agent_seen_at, updated_at) < now() - make_interval(secs => $1::float8 / 1000)
       RETURNING id`,
      [goneForMs, connected],
    );
    return rows.map((r) => r.id);
  }
}
