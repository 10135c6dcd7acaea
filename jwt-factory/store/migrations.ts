import type pg from 'pg';
import { runMigrations, type Migration } from '../../lib/postgres.js';

/**
 * The factory's PostgreSQL schema as numbered migrations, applied in order at start-up by
 * whichever store opens first (the key store or the OIDC store), each once, with its row in
 * jf_migrations (lib/postgres.ts: one transaction, an advisory lock for replicas starting
 * together). Never edit a released migration; add the next number.
 */
export const MIGRATIONS: readonly Migration[] = [
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
  {
    version: 2,
    name: 'OIDC state: codes, sessions, refresh tokens, marks',
    sql: `
      -- Every id is the SHA-256 (base64url) of the secret the client holds: a dump redeems nothing.
      CREATE TABLE jf_oidc_codes (
        id          text PRIMARY KEY,
        record      jsonb NOT NULL,
        expires_at  timestamptz NOT NULL,
        -- Set once by the one redemption that wins; a second one is a replay.
        used_at     timestamptz,
        -- What the redemption issued (refresh family, access token jtis), revoked on a replay.
        issued      jsonb
      );
      CREATE TABLE jf_oidc_sessions (
        id          text PRIMARY KEY,
        record      jsonb NOT NULL,
        expires_at  timestamptz NOT NULL
      );
      CREATE TABLE jf_oidc_refresh (
        id          text PRIMARY KEY,
        family_id   text NOT NULL,
        record      jsonb NOT NULL,
        expires_at  timestamptz NOT NULL,
        used_at     timestamptz
      );
      -- Consumed assertion jtis, revoked access token jtis, revoked refresh families.
      CREATE TABLE jf_oidc_marks (
        kind        text NOT NULL,
        value       text NOT NULL,
        expires_at  timestamptz NOT NULL,
        PRIMARY KEY (kind, value)
      );
      CREATE INDEX jf_oidc_codes_expiry ON jf_oidc_codes (expires_at);
      CREATE INDEX jf_oidc_sessions_expiry ON jf_oidc_sessions (expires_at);
      CREATE INDEX jf_oidc_refresh_expiry ON jf_oidc_refresh (expires_at);
      CREATE INDEX jf_oidc_marks_expiry ON jf_oidc_marks (expires_at);
    `,
  },
  {
    version: 3,
    name: 'OIDC failure counters of the login and client-authentication lockout',
    sql: `
      -- key is the SHA-256 (base64url) of 'user:<name>', 'address:<ip>' or 'client:<client_id>': a dump lists nobody.
      CREATE TABLE jf_oidc_failures (
        key             text PRIMARY KEY,
        failures        integer NOT NULL CHECK (failures > 0),
        last_failure_at timestamptz NOT NULL,
        expires_at      timestamptz NOT NULL
      );
      CREATE INDEX jf_oidc_failures_expiry ON jf_oidc_failures (expires_at);
    `,
  },
];

/** An arbitrary constant naming the factory's migration lock (pg_advisory_xact_lock takes a bigint). */
const MIGRATION_LOCK = 7_308_604_897_068_118_387n;

/** Applies the factory's migrations not yet applied; safe when several replicas run it at once. Returns the versions applied. */
export const migrate = (pool: pg.Pool): Promise<number[]> => runMigrations(pool, { table: 'jf_migrations', lock: MIGRATION_LOCK, migrations: MIGRATIONS });

