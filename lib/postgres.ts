import pg from 'pg';
import type { Logger } from './logger.js';

/**
 * What every PostgreSQL store of the suite shares (the factory's keys and OIDC state, the
 * gateway's sessions): transactions, versioned migrations under an advisory lock, telling a
 * database that cannot be reached from a bug, and tracking whether it can be reached.
 */

/** One numbered schema change; never edit a released one, add the next number. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Runs `work` in one transaction on one pooled connection: COMMIT when it resolves, ROLLBACK when it throws. */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Applies the migrations not yet recorded in `table`, in order, each once, all in one
 * transaction. A transaction-level advisory lock (`lock`, a bigint) serialises processes
 * starting together: the second waits, then finds everything applied. Returns the versions applied.
 */
export function runMigrations(pool: pg.Pool, schema: { table: string; lock: bigint; migrations: readonly Migration[] }): Promise<number[]> {
  if (!/^[a-z_]+$/.test(schema.table)) throw new Error(`bad migrations table name ${schema.table}`);
  return inTransaction(pool, async (client) => {
    const applied: number[] = [];
    await client.query('SELECT pg_advisory_xact_lock($1)', [schema.lock.toString()]);
    await client.query(`CREATE TABLE IF NOT EXISTS ${schema.table} (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await client.query<{ version: number }>(`SELECT version FROM ${schema.table}`)).rows.map((r) => r.version));
    for (const m of schema.migrations) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query(`INSERT INTO ${schema.table} (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      applied.push(m.version);
    }
    return applied;
  });
}

/**
 * True when `err` says the database is away or overloaded rather than that a query is wrong:
 * a socket error, a lost connection or a pool timeout, or SQLSTATE class 08 (connection exception),
 * 53 (insufficient resources), 57P01–57P03 (shutdown, cannot connect now), 57014 (statement
 * timeout) — PostgreSQL's Appendix A. Anything else is a bug and stays a 500.
 */
export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  // Node's socket errors (ECONNREFUSED, ECONNRESET, ETIMEDOUT, ENOTFOUND, EPIPE …).
  if (typeof code === 'string' && /^E[A-Z_]+$/.test(code)) return true;
  // pg and pg-pool's own: "Connection terminated unexpectedly", "timeout exceeded when trying to connect", "Client has encountered a connection error".
  if (typeof code !== 'string') return /connection|connect|terminated/i.test(err.message);
  return code.startsWith('08') || code.startsWith('53') || ['57P01', '57P02', '57P03', '57014'].includes(code);
}

/**
 * Whether the database answers: set by every operation's outcome; while it does not, a probe
 * (`SELECT 1`) runs every `probeMs` so readiness comes back without waiting for traffic.
 */
export function createReachability(options: {
  pool: pg.Pool;
  logger: Logger;
  /** The database's name in the log lines ("key database"). */
  what: string;
  /** What the unreachable line says goes on meanwhile; default: requests that need it answer 503. */
  meanwhile?: string;
  probeMs?: number;
}) {
  const { pool, logger, what } = options;
  const probeMs = options.probeMs ?? 1000;
  const meanwhile = options.meanwhile ?? 'requests that need it answer 503';
  let reachable = true;
  let probe: NodeJS.Timeout | undefined;
  let closed = false;

  const set = (now: boolean, reason?: string) => {
    if (now === reachable) return;
    reachable = now;
    if (now) {
      logger.info(`${what} reachable`);
      if (probe) clearTimeout(probe);
      probe = undefined;
      return;
    }
    logger.error({ reason }, `${what} unreachable: ${meanwhile}`);
    schedule();
  };
  const schedule = () => {
    if (closed || probe) return;
    probe = setTimeout(() => {
      probe = undefined;
      pool.query('SELECT 1').then(
        () => set(true),
        () => schedule(),
      );
    }, probeMs);
    probe.unref();
  };
  // An idle client whose server went away emits here; without a handler the process would exit.
  pool.on('error', (err) => set(false, err.message));

  return {
    isReachable: () => reachable,
    /** Records what another path learnt (a LISTEN connection made or lost, a periodic re-read). */
    mark: set,
    /**
     * Runs one database operation: success marks the database reachable; an unavailability
     * error marks it unreachable and is replaced by `unavailable(err)`; any other error passes.
     */
    async guard<T>(work: () => Promise<T>, unavailable: (err: unknown) => Error): Promise<T> {
      try {
        const result = await work();
        set(true);
        return result;
      } catch (err) {
        if (!isUnavailable(err)) throw err;
        set(false, (err as Error).message);
        throw unavailable(err);
      }
    },
    close() {
      closed = true;
      if (probe) clearTimeout(probe);
    },
  };
}

/** What every pool of the suite is opened with. */
export interface PoolSettings {
  /** Connections at most. */
  max: number;
  /** How long an operation waits for a connection before it fails (and its store answers 503). */
  connectTimeoutMs: number;
  /** PostgreSQL's statement_timeout for every query of the pool. */
  statementTimeoutMs: number;
}

/**
 * One pool per database URL for the stores of one process: stores on the same database share
 * its connections (they are busy at different moments, and each replica counts against
 * max_connections), stores on different databases keep apart. `end` closes every pool, after
 * the stores that borrowed them are closed.
 */
export function createPoolSet(settings: PoolSettings) {
  const pools = new Map<string, pg.Pool>();
  return {
    /** The pool of `url`, opened on first use. */
    poolFor(url: string): pg.Pool {
      let pool = pools.get(url);
      if (!pool) {
        pool = new pg.Pool({ connectionString: url, max: settings.max, connectionTimeoutMillis: settings.connectTimeoutMs, statement_timeout: settings.statementTimeoutMs });
        pools.set(url, pool);
      }
      return pool;
    },
    /** How many pools are open (one per distinct URL). */
    size: () => pools.size,
    async end(): Promise<void> {
      const open = [...pools.values()];
      pools.clear();
      await Promise.all(open.map((pool) => pool.end()));
    },
  };
}

/** The pools of one process (createPoolSet). */
export type PoolSet = ReturnType<typeof createPoolSet>;
