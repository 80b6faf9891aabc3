import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Database } from '../database/database.js';
import { hashSecret } from './key-store.js';

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
}

export type NewNode = Omit<NodeRecord, 'draining' | 'createdAt' | 'updatedAt'>;

export interface NodeStore {
  /** Returns the join token once; only its hash is kept. Throws NodeExistsError on a taken id. */
  register(node: NewNode): Promise<{ record: NodeRecord; joinToken: string }>;
  list(): Promise<NodeRecord[]>;
  get(id: string): Promise<NodeRecord | undefined>;
  setDraining(id: string, draining: boolean): Promise<NodeRecord | undefined>;
  remove(id: string): Promise<boolean>;
  /** True when the node exists and the token is its join token (compared in constant time). */
  verifyJoinToken(id: string, token: string): Promise<boolean>;
  /** Nodes changed (registered, drained, resumed) since `since`, for gateways' polling. */
  changedSince(since: Date): Promise<NodeRecord[]>;
}

export class NodeExistsError extends Error {
  override readonly name = 'NodeExistsError';
}

interface Row {
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
}

const COLUMNS = 'id, region, cluster, url, engine, models, tokens_per_second, max_sequences, draining, created_at, updated_at';

function toRecord(r: Row): NodeRecord {
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
  };
}

/** The node registry in Postgres (or the embedded PGlite). */
export class PgNodeStore implements NodeStore {
  constructor(private readonly db: Database) {}

  async register(node: NewNode): Promise<{ record: NodeRecord; joinToken: string }> {
    const joinToken = `sy-join-${randomBytes(24).toString('base64url')}`;
    try {
      const { rows } = await this.db.pool.query<Row>(
        `INSERT INTO nodes (id, region, cluster, url, engine, models, tokens_per_second, max_sequences, join_token_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ${COLUMNS}`,
        [node.id, node.region, node.cluster, node.url, node.engine, node.models, node.tokensPerSecond, node.maxSequences, hashSecret(joinToken)],
      );
      return { record: toRecord(rows[0] as Row), joinToken };
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new NodeExistsError(`node "${node.id}" is already registered`, { cause: err });
      throw err;
    }
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
}
