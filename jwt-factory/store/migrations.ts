import type pg from 'pg';

/**
 * The PostgreSQL schema as numbered migrations, applied in order at start-up. Each runs once,
 * in one transaction with its row in jf_migrations. A transaction-level advisory lock
 * serialises replicas starting together: the second waits, then finds everything applied.
 * Never edit a released migration; add the next number.
 */
export const MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  {
    version: 1,
    name: 'keys and their versions',
    sql: `
      CREATE TABLE jf_keys (
        key_id      text PRIMARY KEY,
        alg         text NOT NULL,
        -- Moves on every create or rotation: a rotation applies only over the revision it read.
        revision    bigint NOT NULL DEFAULT 1,
        created_at  timestamptz NOT NULL,
        -- Seconds between automatic rotations for this key; NULL: ROTATION_INTERVAL.
        rotation_interval integer
      );
      CREATE TABLE jf_key_versions (
        key_id      text NOT NULL REFERENCES jf_keys (key_id) ON DELETE CASCADE,
        seq         bigserial NOT NULL,
        kid         text NOT NULL,
        alg         text NOT NULL,
        created_at  timestamptz NOT NULL,
        activate_at timestamptz,
        retire_at   timestamptz,
        -- The private JWK sealed with AES-256-GCM (keyId and kid as associated data): never plain.
        private_key text NOT NULL CHECK (private_key LIKE 'jfk1.%'),
        PRIMARY KEY (key_id, kid)
      );
      CREATE INDEX jf_key_versions_order ON jf_key_versions (key_id, seq DESC);
    `,
  },
];

/** An arbitrary constant naming the factory's migration lock (pg_advisory_xact_lock takes a bigint). */
const MIGRATION_LOCK = 7_308_604_897_068_118_387n;

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

/** Applies the migrations not yet applied; safe when several replicas run it at once. Returns the versions applied. */
export function migrate(pool: pg.Pool): Promise<number[]> {
  return inTransaction(pool, async (client) => {
    const applied: number[] = [];
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK.toString()]);
    await client.query('CREATE TABLE IF NOT EXISTS jf_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM jf_migrations')).rows.map((r) => r.version));
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO jf_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    return applied;
  });
}
