import { createHash, randomBytes } from 'node:crypto';
import type { Database } from '../database/database.js';
import type { KeyLimits } from '../ratelimit/rate-limiter.js';

export type Priority = 'interactive' | 'standard' | 'batch';

export interface TenantRecord {
  readonly id: string;
  readonly name: string;
  /** Share weight in the admission queue's fair share (1 = equal). */
  readonly weight: number;
  readonly createdAt: Date;
  readonly disabledAt: Date | null;
}

export interface ApiKeyRecord {
  readonly id: string;
  readonly tenantId: string;
  readonly name: string;
  readonly keyPrefix: string;
  readonly limits: KeyLimits;
  readonly models: readonly string[];
  readonly priority: Priority;
  /** The tenant's share weight, read with the key so the hot path needs no second lookup. */
  readonly tenantWeight: number;
  readonly createdAt: Date;
  readonly revokedAt: Date | null;
}

export interface NewKey {
  readonly tenant: string;
  readonly name: string;
  readonly limits: KeyLimits;
  readonly models: readonly string[];
  readonly priority: Priority;
}

export interface KeyStore {
  /** Creates the tenant, or updates its name and weight when given; re-enables a disabled one. */
  createTenant(t: { id: string; name?: string; weight?: number }): Promise<TenantRecord>;
  listTenants(): Promise<TenantRecord[]>;
  /** Disables the tenant and revokes its keys; false when there is no such active tenant. */
  deleteTenant(id: string): Promise<boolean>;
  /** Creates the tenant if needed. The secret is returned here and never stored. */
  createKey(input: NewKey): Promise<{ record: ApiKeyRecord; secret: string }>;
  listKeys(tenant?: string): Promise<ApiKeyRecord[]>;
  getKey(id: string): Promise<ApiKeyRecord | undefined>;
  revokeKey(id: string): Promise<boolean>;
  /** Active keys only: revoked keys and keys of disabled tenants are not found. */
  findBySecret(secret: string): Promise<ApiKeyRecord | undefined>;
  /** Ids of keys revoked (or whose tenant was disabled) after `since`. */
  revokedSince(since: Date): Promise<string[]>;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

interface KeyRow {
  id: string;
  tenant_id: string;
  name: string;
  key_prefix: string;
  limits: KeyLimits;
  models: string[];
  priority: Priority;
  tenant_weight: number;
  created_at: Date;
  revoked_at: Date | null;
}

const KEY_COLUMNS =
  'k.id, k.tenant_id, k.name, k.key_prefix, k.limits, k.models, k.priority, k.created_at, k.revoked_at, ' +
  '(SELECT w.weight FROM tenants w WHERE w.id = k.tenant_id) AS tenant_weight';

function toKey(r: KeyRow): ApiKeyRecord {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    name: r.name,
    keyPrefix: r.key_prefix,
    limits: r.limits,
    models: r.models,
    priority: r.priority,
    tenantWeight: r.tenant_weight,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
  };
}

function toTenant(r: { id: string; name: string; weight: number; created_at: Date; disabled_at: Date | null }): TenantRecord {
  return { id: r.id, name: r.name, weight: r.weight, createdAt: r.created_at, disabledAt: r.disabled_at };
}

/** Tenants and API keys in Postgres (or the embedded PGlite). */
export class PgKeyStore implements KeyStore {
  constructor(private readonly db: Database) {}

  async createTenant(t: { id: string; name?: string; weight?: number }): Promise<TenantRecord> {
    const { rows } = await this.db.pool.query(
      `INSERT INTO tenants (id, name, weight) VALUES ($1, $2, COALESCE($4::double precision, 1))
       ON CONFLICT (id) DO UPDATE SET name = COALESCE($3, tenants.name), weight = COALESCE($4::double precision, tenants.weight), disabled_at = NULL
       RETURNING id, name, weight, created_at, disabled_at`,
      [t.id, t.name ?? t.id, t.name ?? null, t.weight ?? null],
    );
    return toTenant(rows[0]);
  }

  async listTenants(): Promise<TenantRecord[]> {
    const { rows } = await this.db.pool.query('SELECT id, name, weight, created_at, disabled_at FROM tenants ORDER BY id');
    return rows.map(toTenant);
  }

  async deleteTenant(id: string): Promise<boolean> {
    const client = await this.db.pool.connect();
    try {
      await client.query('BEGIN');
      const res = await client.query('UPDATE tenants SET disabled_at = now() WHERE id = $1 AND disabled_at IS NULL', [id]);
      await client.query('UPDATE api_keys SET revoked_at = now(), updated_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL', [id]);
      await client.query('COMMIT');
      return (res.rowCount ?? 0) > 0;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async createKey(input: NewKey): Promise<{ record: ApiKeyRecord; secret: string }> {
    const secret = `sk-sy-${randomBytes(32).toString('base64url')}`;
    const id = `key_${randomBytes(12).toString('hex')}`;
    await this.db.pool.query('INSERT INTO tenants (id, name) VALUES ($1, $1) ON CONFLICT (id) DO NOTHING', [input.tenant]);
    const { rows } = await this.db.pool.query<KeyRow>(
      `INSERT INTO api_keys AS k (id, tenant_id, name, key_hash, key_prefix, limits, models, priority)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${KEY_COLUMNS}`,
      [id, input.tenant, input.name, hashSecret(secret), secret.slice(0, 10), JSON.stringify(input.limits), input.models, input.priority],
    );
    return { record: toKey(rows[0] as KeyRow), secret };
  }

  async listKeys(tenant?: string): Promise<ApiKeyRecord[]> {
    const { rows } = await this.db.pool.query<KeyRow>(
      `SELECT ${KEY_COLUMNS} FROM api_keys k WHERE $1::text IS NULL OR k.tenant_id = $1 ORDER BY k.created_at, k.id`,
      [tenant ?? null],
    );
    return rows.map(toKey);
  }

  async getKey(id: string): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.db.pool.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys k WHERE k.id = $1`, [id]);
    return rows[0] === undefined ? undefined : toKey(rows[0]);
  }

  async revokeKey(id: string): Promise<boolean> {
    const res = await this.db.pool.query('UPDATE api_keys SET revoked_at = now(), updated_at = now() WHERE id = $1 AND revoked_at IS NULL', [id]);
    return (res.rowCount ?? 0) > 0;
  }

  async findBySecret(secret: string): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.db.pool.query<KeyRow>(
      `SELECT ${KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
       WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND t.disabled_at IS NULL`,
      [hashSecret(secret)],
    );
    return rows[0] === undefined ? undefined : toKey(rows[0]);
  }

  async revokedSince(since: Date): Promise<string[]> {
    const { rows } = await this.db.pool.query<{ id: string }>('SELECT id FROM api_keys WHERE revoked_at > $1', [since]);
    return rows.map((r) => r.id);
  }
}
