import pg from 'pg';
import type { Logger } from '../../lib/logger.js';
import { createReachability, runMigrations, type Migration } from '../../lib/postgres.js';
import { createSealer } from '../../lib/sealing.js';
import type { SessionStore, StoredRecord } from './store.js';

/**
 * The login's store in PostgreSQL, so several gateway replicas share logins under way and
 * sessions (a login through one, the next request through another) and a restart logs nobody
 * out. Rows are keyed by the SHA-256 of the cookie value (the handler's store key), and each
 * record — it holds the session's access, id and refresh tokens — is sealed with AES-256-GCM
 * under SESSION_ENCRYPTION_KEY, its key as associated data: a dump or a backup yields neither
 * a working cookie nor a token, and a row moved under another key does not open.
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
  /** How often expired rows are deleted (ms). Default 60 000. */
  sweepEveryMs?: number;
  /** How long an operation waits for a connection. Default 2000 ms. */
  connectTimeoutMs?: number;
}

/** The store, plus its sweep (for tests) and close. */
export interface PostgresSessionStore extends SessionStore {
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

  return {
    async get(key) {
      const { rows } = await query<{ sealed: string }>('SELECT sealed FROM mesh_gateway_sessions WHERE key = $1 AND expires_at > $2', [key, new Date(now())]);
      if (!rows[0]) return undefined;
      try {
        return JSON.parse(sealer.open(rows[0].sealed, [key])) as StoredRecord;
      } catch (err) {
        // Sealed under another key (SESSION_ENCRYPTION_KEY changed) or tampered: no session.
        logger.warn({ reason: (err as Error).message }, 'a stored session does not open; treated as absent');
        return undefined;
      }
    },
    async set(key, record) {
      await query(
        `INSERT INTO mesh_gateway_sessions (key, kind, sealed, expires_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (key) DO UPDATE SET kind = EXCLUDED.kind, sealed = EXCLUDED.sealed, expires_at = EXCLUDED.expires_at`,
        [key, record.kind, sealer.seal(JSON.stringify(record), [key]), new Date(record.expiresAt)],
      );
    },
    async delete(key) {
      await query('DELETE FROM mesh_gateway_sessions WHERE key = $1', [key]);
    },
    sweep,
    async close() {
      clearInterval(sweeper);
      reachability.close();
      await pool.end();
    },
  };
}
