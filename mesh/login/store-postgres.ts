import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../../lib/logger.js';
import { createReachability, runMigrations, type Migration } from '../../lib/postgres.js';
import { createSealer } from '../../lib/sealing.js';
import type { RefreshLocks, SessionRecord, SessionStore, StoredRecord } from './store.js';

/**
 * The login's store in PostgreSQL, so several gateway replicas share logins under way and
 * sessions (a login through one, the next request through another) and a restart logs nobody
 * out. Rows are keyed by the SHA-256 of the cookie value (the handler's store key), and each
 * record — it holds the session's access, id and refresh tokens — is sealed with AES-256-GCM
 * under SESSION_ENCRYPTION_KEY, its key as associated data: a dump or a backup yields neither
 * a working cookie nor a token, and a row moved under another key does not open.
 *
 * Outside the seal, in columns, only what the store itself acts on: the kind, the expiry, the
 * last use (a touch writes those, never the tokens), the write order (the size cap drops the
 * least recently written first) and the refresh lease (`refresh_lease`, `refresh_lease_until`):
 * a conditional UPDATE claims it, so of the replicas wanting to refresh one session one asks the
 * provider while no connection is held during that call.
 */

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'gateway sessions and logins under way',
    sql: `
      CREATE TABLE mesh_gateway_sessions (
        key         text PRIMARY KEY,
        kind        text NOT NULL CHECK (kind IN ('login', 'session')),
        sealed      text NOT NULL CHECK (sealed LIKE 'mgs1.%'),
        expires_at  timestamptz NOT NULL
      );
      CREATE INDEX mesh_gateway_sessions_expiry ON mesh_gateway_sessions (expires_at);
    `,
  },
  {
    version: 2,
    name: 'last use, write order and refresh lease of gateway sessions',
    sql: `
      CREATE SEQUENCE mesh_gateway_sessions_written;
      ALTER TABLE mesh_gateway_sessions
        ADD COLUMN last_seen_at        timestamptz,
        ADD COLUMN written             bigint,
        ADD COLUMN refresh_lease       text,
        ADD COLUMN refresh_lease_until timestamptz;
      UPDATE mesh_gateway_sessions SET written = nextval('mesh_gateway_sessions_written');
      ALTER TABLE mesh_gateway_sessions
        ALTER COLUMN written SET DEFAULT nextval('mesh_gateway_sessions_written'),
        ALTER COLUMN written SET NOT NULL;
      CREATE INDEX mesh_gateway_sessions_written_order ON mesh_gateway_sessions (kind, written);
    `,
  },
];

/** An arbitrary constant naming the gateway's migration lock (not the factory's: the two may share a database). */
const MIGRATION_LOCK = 5_120_390_771_248_664_091n;

export interface PostgresSessionStoreOptions {
  /** A postgres:// URL. */
  url: string;
  /** 32 bytes: seals every record (SESSION_ENCRYPTION_KEY). */
  key: Buffer;
  /** The clock (ms since the epoch). */
  now: () => number;
  logger: Logger;
  /** Most rows of each kind (logins under way, sessions) kept; past it the least recently written go first (--session-max). Default 10 000. */
  maxEntries?: number;
  /** How often expired rows are deleted (ms). Default 60 000. */
  sweepEveryMs?: number;
  /** How long an operation waits for a connection. Default 2000 ms. */
  connectTimeoutMs?: number;
}

/** The store, plus its sweep (for tests) and close. */
export interface PostgresSessionStore extends SessionStore {
  refreshLocks: RefreshLocks;
  /** Deletes the rows past their expiry; answers how many. */
  sweep(): Promise<number>;
  close(): Promise<void>;
}

/**
 * Creates the store. Its migrations run before its first operation (and again on the next one
 * if the database was away), so the gateway starts even while PostgreSQL is still coming up;
 * until then a request that needs a session answers the gateway's 503.
 */
export function createPostgresSessionStore(options: PostgresSessionStoreOptions): PostgresSessionStore {
  const { now, logger } = options;
  const pool = new pg.Pool({ connectionString: options.url, connectionTimeoutMillis: options.connectTimeoutMs ?? 2000, max: 5, statement_timeout: 10_000 });
  const reachability = createReachability({ pool, logger, what: 'session database' });
  const sealer = createSealer({ prefix: 'mgs1', current: options.key, settings: 'SESSION_ENCRYPTION_KEY' });
  let migrated: Promise<unknown> | undefined;

  const unavailable = (err: unknown) => new Error(`session database unreachable: ${(err as Error).message}`, { cause: err });
  async function query<R extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    migrated ??= runMigrations(pool, { table: 'mesh_gateway_migrations', lock: MIGRATION_LOCK, migrations: MIGRATIONS }).catch((err: unknown) => {
      migrated = undefined;
      throw err;
    });
    return reachability.guard(async () => {
      await migrated;
      return pool.query<R>(text, values);
    }, unavailable);
  }

  const sweep = async () => (await query('DELETE FROM mesh_gateway_sessions WHERE expires_at <= $1', [new Date(now())])).rowCount ?? 0;
  const sweeper = setInterval(() => {
    sweep().catch((err: Error) => logger.warn({ reason: err.message }, 'session sweep failed'));
  }, options.sweepEveryMs ?? 60_000);
  sweeper.unref();

  type Row = { sealed: string; expires_at: Date; last_seen_at: Date | null };
  /** The record a row holds; undefined when its seal does not open. The columns a touch writes win over the sealed copies. */
  const open = (key: string, row: Row): StoredRecord | undefined => {
    let record: StoredRecord;
    try {
      record = JSON.parse(sealer.open(row.sealed, [key])) as StoredRecord;
    } catch (err) {
      // Sealed under another key (SESSION_ENCRYPTION_KEY changed) or tampered: no session.
      logger.warn({ reason: (err as Error).message }, 'a stored session does not open; treated as absent');
      return undefined;
    }
    record.expiresAt = row.expires_at.getTime();
    if (record.kind === 'session' && row.last_seen_at) record.lastSeenAt = row.last_seen_at.getTime();
    return record;
  };
  const get = async (key: string): Promise<StoredRecord | undefined> => {
    const { rows } = await query<Row>('SELECT sealed, expires_at, last_seen_at FROM mesh_gateway_sessions WHERE key = $1 AND expires_at > $2', [key, new Date(now())]);
    return rows[0] && open(key, rows[0]);
  };
  const maxEntries = options.maxEntries ?? 10_000;

  return {
    get,
    async set(key, record) {
      await query(
        `INSERT INTO mesh_gateway_sessions (key, kind, sealed, expires_at, last_seen_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (key) DO UPDATE SET kind = EXCLUDED.kind, sealed = EXCLUDED.sealed, expires_at = EXCLUDED.expires_at, last_seen_at = EXCLUDED.last_seen_at,
             written = nextval('mesh_gateway_sessions_written'), refresh_lease = NULL, refresh_lease_until = NULL`,
        [key, record.kind, sealer.seal(JSON.stringify(record), [key]), new Date(record.expiresAt), record.kind === 'session' ? new Date(record.lastSeenAt) : null],
      );
      // The cap, per kind: a flood of anonymous page loads (each a login under way) pushes out
      // only older logins under way, never a session. Replicas trimming at once delete the same rows.
      await query(
        `DELETE FROM mesh_gateway_sessions WHERE kind = $1 AND written <= (
           SELECT written FROM mesh_gateway_sessions WHERE kind = $1 ORDER BY written DESC OFFSET $2 LIMIT 1)`,
        [record.kind, maxEntries],
      );
    },
    async delete(key) {
      await query('DELETE FROM mesh_gateway_sessions WHERE key = $1', [key]);
    },
    async touch(key, lastSeenAt, expiresAt) {
      await query(
        `UPDATE mesh_gateway_sessions SET last_seen_at = $2, expires_at = $3, written = nextval('mesh_gateway_sessions_written')
           WHERE key = $1 AND kind = 'session' AND expires_at > $4`,
        [key, new Date(lastSeenAt), new Date(expiresAt), new Date(now())],
      );
    },
    refreshLocks: {
      async claim(key, ms) {
        const lease = randomBytes(16).toString('base64url');
        const at = now();
        const { rows } = await query<Row>(
          `UPDATE mesh_gateway_sessions SET refresh_lease = $2, refresh_lease_until = $3
             WHERE key = $1 AND kind = 'session' AND expires_at > $4 AND (refresh_lease_until IS NULL OR refresh_lease_until <= $4)
             RETURNING sealed, expires_at, last_seen_at`,
          [key, lease, new Date(at + ms), new Date(at)],
        );
        const record = rows[0] ? open(key, rows[0]) : await get(key);
        if (record?.kind !== 'session') return undefined;
        return rows[0] ? { record, lease } : { record };
      },
      async commit(key, lease, record: SessionRecord) {
        // Expiry and last use stay as touches left them: a refresh changes the tokens only.
        const { rowCount } = await query(
          `UPDATE mesh_gateway_sessions SET sealed = $3, written = nextval('mesh_gateway_sessions_written'), refresh_lease = NULL, refresh_lease_until = NULL
             WHERE key = $1 AND refresh_lease = $2`,
          [key, lease, sealer.seal(JSON.stringify(record), [key])],
        );
        return rowCount === 1;
      },
      async release(key, lease) {
        await query('UPDATE mesh_gateway_sessions SET refresh_lease = NULL, refresh_lease_until = NULL WHERE key = $1 AND refresh_lease = $2', [key, lease]);
      },
    },
    sweep,
    async close() {
      clearInterval(sweeper);
      reachability.close();
      await pool.end();
    },
  };
}
