import pg from 'pg';
import { createReachability } from '../../lib/postgres.js';
import type { Logger } from '../../lib/logger.js';
import type { Clock } from '../keys.js';
import { migrate } from '../store/migrations.js';
import { temporarilyUnavailable } from './errors.js';
import type { CodeRecord, FailureRecord, MarkKind, OidcStore, RefreshRecord, SessionRecord } from './store.js';

export interface PostgresOidcStoreOptions {
  /** A postgres:// URL (KEY_STORE): the same database as the keys. Unused when `pool` is given. */
  url?: string;
  /** A pool to share with the key store (the factory's): used as given and left open on close, for its owner to end. */
  pool?: pg.Pool;
  clock: Clock;
  logger: Logger;
  /** How often expired rows are deleted (ms). Default 60 000. */
  sweepIntervalMs?: number;
  /** Without `pool`: how long an operation waits for a connection before answering 503. Default 2000 ms. */
  connectTimeoutMs?: number;
  /** Without `pool`: connections at most. Default 5. */
  maxConnections?: number;
}

/** The OIDC store over PostgreSQL, plus what the factory needs beyond the OidcStore contract. */
export interface PostgresOidcStore extends OidcStore {
  /** Runs the migrations (idempotent, safe for replicas starting together) and starts the sweeper. */
  open(): Promise<void>;
  /** Deletes every row past its expiry at the injected clock; answers how many went. */
  sweep(): Promise<number>;
  /** False while the database cannot be reached (readiness). */
  isReachable(): boolean;
  close(): Promise<void>;
}

type FailureRow = { failures: number; last_failure_at: Date; expires_at: Date };
const failureOf = (row: FailureRow): FailureRecord => ({ failures: row.failures, lastFailureAt: row.last_failure_at.getTime(), expiresAt: row.expires_at.getTime() });

type Row = { record: Record<string, unknown>; expires_at: Date; used_at?: Date | null; issued?: CodeRecord['issued'] | null };

/** Splits a record into its stored JSON and the columns the queries use. */
function stored<T extends { id: string; expiresAt: number; usedAt?: number }>(record: T, omit: readonly string[] = []): { json: string; expiresAt: Date; usedAt: Date | null } {
  const rest: Record<string, unknown> = { ...record };
  for (const name of ['id', 'expiresAt', 'usedAt', ...omit]) delete rest[name];
  return { json: JSON.stringify(rest), expiresAt: new Date(record.expiresAt), usedAt: record.usedAt === undefined ? null : new Date(record.usedAt) };
}

/** A record as the file store answers it: its JSON with id, expiresAt and (when set) usedAt and issued. */
function recordOf<T>(id: string, row: Row, usedAt: Date | null | undefined = row.used_at): T {
  return {
    ...row.record,
    id,
    expiresAt: row.expires_at.getTime(),
    ...(usedAt ? { usedAt: usedAt.getTime() } : {}),
    ...(row.issued ? { issued: row.issued } : {}),
  } as T;
}

/**
 * The OIDC provider's state in PostgreSQL, shared by every replica (and worker). Ids are the
 * SHA-256 of the secrets (the provider hashes before it calls the store), so a dump redeems
 * nothing. useCode and useRefresh are one UPDATE each over a row locked by a subquery, which
 * returns the row as it was: of racing redemptions on any replicas, exactly one sees it
 * unused. Times come from the injected clock, never the database's, as in the file store.
 * A database that cannot be reached answers 503 temporarily_unavailable (RFC 6749 §4.1.2.1).
 */
export function createPostgresOidcStore(options: PostgresOidcStoreOptions): PostgresOidcStore {
  const { clock, logger } = options;
  const pool = options.pool ?? new pg.Pool({
    connectionString: options.url,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 2000,
    max: options.maxConnections ?? 5,
    statement_timeout: 10_000,
  });
  const reachability = createReachability({ pool, logger, what: 'OIDC database' });
  const sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
  let sweeper: NodeJS.Timeout | undefined;

  const now = () => clock();
  const unavailable = () => temporarilyUnavailable('The login state cannot be reached right now: retry in a few seconds.');
  const query = <R extends pg.QueryResultRow>(text: string, values: unknown[]) => reachability.guard(() => pool.query<R>(text, values), unavailable);

  /** Marks a row of `table` used and answers it as it was before; undefined when unknown or expired. */
  async function use<T>(table: 'jf_oidc_codes' | 'jf_oidc_refresh', id: string): Promise<T | undefined> {
    const t = now();
    // The subquery locks the row; a racing UPDATE waits, then (READ COMMITTED) re-reads the
    // row the winner committed, so its `before.used_at` is the winner's time, never NULL.
    const extra = table === 'jf_oidc_codes' ? ', t.issued' : '';
    const { rows } = await query<Row & { before_used: Date | null }>(
      `UPDATE ${table} t SET used_at = coalesce(t.used_at, $2)
         FROM (SELECT id, used_at FROM ${table} WHERE id = $1 AND expires_at > $2 FOR UPDATE) before
        WHERE t.id = before.id
        RETURNING t.record, t.expires_at, before.used_at AS before_used${extra}`,
      [id, t],
    );
    const row = rows[0];
    return row && recordOf<T>(id, row, row.before_used);
  }

  async function sweep(): Promise<number> {
    const t = now();
    let removed = 0;
    for (const table of ['jf_oidc_codes', 'jf_oidc_sessions', 'jf_oidc_refresh', 'jf_oidc_marks', 'jf_oidc_failures']) {
      removed += (await query(`DELETE FROM ${table} WHERE expires_at <= $1`, [t])).rowCount ?? 0;
    }
    return removed;
  }

  return {
    async open() {
      await migrate(pool);
      sweeper = setInterval(() => {
        sweep().catch((err: Error) => logger.warn({ reason: err.message }, 'OIDC sweep failed'));
      }, sweepIntervalMs);
      sweeper.unref();
    },
    sweep,
    isReachable: reachability.isReachable,

    async saveCode(record) {
      const { json, expiresAt, usedAt } = stored(record, ['issued']);
      await query(
        `INSERT INTO jf_oidc_codes (id, record, expires_at, used_at, issued) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, expires_at = EXCLUDED.expires_at, used_at = EXCLUDED.used_at, issued = EXCLUDED.issued`,
        [record.id, json, expiresAt, usedAt, record.issued === undefined ? null : JSON.stringify(record.issued)],
      );
    },
    useCode: (id) => use<CodeRecord>('jf_oidc_codes', id),
    async noteIssued(codeId, issued) {
      await query('UPDATE jf_oidc_codes SET issued = $2 WHERE id = $1', [codeId, JSON.stringify(issued)]);
    },

    async saveSession(record) {
      const { json, expiresAt } = stored(record);
      await query('INSERT INTO jf_oidc_sessions (id, record, expires_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, expires_at = EXCLUDED.expires_at', [
        record.id,
        json,
        expiresAt,
      ]);
    },
    async getSession(id) {
      const { rows } = await query<Row>('SELECT record, expires_at FROM jf_oidc_sessions WHERE id = $1 AND expires_at > $2', [id, now()]);
      return rows[0] && recordOf<SessionRecord>(id, rows[0]);
    },
    async deleteSession(id) {
      await query('DELETE FROM jf_oidc_sessions WHERE id = $1', [id]);
    },

    async saveRefresh(record) {
      const { json, expiresAt, usedAt } = stored(record);
      await query(
        `INSERT INTO jf_oidc_refresh (id, family_id, record, expires_at, used_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO UPDATE SET family_id = EXCLUDED.family_id, record = EXCLUDED.record, expires_at = EXCLUDED.expires_at, used_at = EXCLUDED.used_at`,
        [record.id, record.familyId, json, expiresAt, usedAt],
      );
    },
    async getRefresh(id) {
      const { rows } = await query<Row>('SELECT record, expires_at, used_at FROM jf_oidc_refresh WHERE id = $1 AND expires_at > $2', [id, now()]);
      return rows[0] && recordOf<RefreshRecord>(id, rows[0]);
    },
    useRefresh: (id) => use<RefreshRecord>('jf_oidc_refresh', id),

    async remember(kind: MarkKind, value: string, expiresAt: number) {
      // One statement: a live mark stays as it is (no row returned), a missing or expired one is (re)written.
      const { rowCount } = await query(
        `INSERT INTO jf_oidc_marks (kind, value, expires_at) VALUES ($1, $2, $3)
           ON CONFLICT (kind, value) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE jf_oidc_marks.expires_at <= $4`,
        [kind, value, new Date(expiresAt), now()],
      );
      return rowCount === 1;
    },
    async isRemembered(kind, value) {
      const { rows } = await query('SELECT 1 FROM jf_oidc_marks WHERE kind = $1 AND value = $2 AND expires_at > $3', [kind, value, now()]);
      return rows.length > 0;
    },

    async countFailure(key, expiresAt) {
      // One statement: the row is locked by the conflict, so racing failures on any replicas each add one.
      const { rows } = await query<FailureRow>(
        `INSERT INTO jf_oidc_failures AS f (key, failures, last_failure_at, expires_at) VALUES ($1, 1, $2, $3)
           ON CONFLICT (key) DO UPDATE SET failures = CASE WHEN f.expires_at <= $2 THEN 1 ELSE f.failures + 1 END, last_failure_at = $2, expires_at = $3
           RETURNING failures, last_failure_at, expires_at`,
        [key, now(), new Date(expiresAt)],
      );
      return failureOf(rows[0]!);
    },
    async getFailures(key) {
      const { rows } = await query<FailureRow>('SELECT failures, last_failure_at, expires_at FROM jf_oidc_failures WHERE key = $1 AND expires_at > $2', [key, now()]);
      return rows[0] && failureOf(rows[0]);
    },
    async clearFailures(key) {
      await query('DELETE FROM jf_oidc_failures WHERE key = $1', [key]);
    },

    async close() {
      if (sweeper) clearInterval(sweeper);
      reachability.close();
      if (!options.pool) await pool.end();
    },
  };
}
