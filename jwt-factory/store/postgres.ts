import type { KeyObject } from 'node:crypto';
import pg from 'pg';
import { AppError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { Algorithm } from '../config.js';
import { generateSigningKey, importStoredJwk, toVersion, versionsKeptByRotation, withRotationInterval, type Clock, type KeyEntry, type KeyVersion } from '../keys.js';
import type { KeySealer } from './encryption.js';
import { createEntryMemory, createKeyedQueue, memoryReaders, rotationRefused } from './memory.js';
import { createReachability, inTransaction } from '../../lib/postgres.js';
import { migrate } from './migrations.js';
import type { KeyStore } from './types.js';

export interface PostgresKeyStoreOptions {
  /** A postgres:// URL (the pg driver's connection string); the LISTEN connection always opens its own. */
  url: string;
  /** A pool on `url`'s database to share with other stores: used as given and left open on close, for its owner to end. Default: a pool of 10 of the store's own. */
  pool?: pg.Pool;
  /** Seals private keys before they reach the database (required: the database never holds a plain key). */
  sealer: KeySealer;
  clock: Clock;
  logger: Logger;
  defaultAlg?: Algorithm;
  /** Seconds a rotated-out key keeps verifying: longest token lifetime + clock tolerance. */
  retireAfterSeconds: number;
  maxKeys?: number;
  /** The most versions one keyId publishes at once; a rotation beyond it is refused (429). Default: no limit. */
  maxVersions?: number;
  /** How often the store re-reads what changed, in case a notification was missed. Default 5000 ms. */
  pollIntervalMs?: number;
  /** How long an operation (or the LISTEN connection) waits for a connection before answering 503. Default 2000 ms. */
  connectTimeoutMs?: number;
  /** Generates a new signing key: the bounded queue of jwt-factory/keygen.ts in the factory. Default: generateSigningKey, unbounded. */
  generateKey?: (alg: Algorithm) => Promise<KeyObject>;
}

/** The LISTEN/NOTIFY channel a change of any keyId is announced on (payload: the keyId). */
export const CHANGE_CHANNEL = 'jwt_factory_keys';

interface VersionRow {
  key_id: string;
  alg: Algorithm;
  revision: string;
  rotation_interval: number | null;
  kid: string;
  created_at: Date;
  activate_at: Date | null;
  retire_at: Date | null;
  private_key: string;
}

const SELECT_VERSIONS = `SELECT k.key_id, k.alg, k.revision, k.rotation_interval, v.kid, v.created_at, v.activate_at, v.retire_at, v.private_key
  FROM jf_keys k JOIN jf_key_versions v USING (key_id)`;

/** 503 for an operation that needs the database while it cannot be reached. */
function unavailable(err: unknown): AppError {
  return new AppError('key_store_unavailable', 503, 'The key database cannot be reached: keys cannot be created or rotated right now (existing keys keep signing). Retry shortly.', {
    expose: true,
    cause: err,
  });
}

/**
 * The key store over PostgreSQL: every replica reads the same tables, creates with
 * INSERT … ON CONFLICT DO NOTHING (one winner), rotates with a conditional update of the key's
 * revision (one winner; the others answer its kid), and hears of changes by LISTEN/NOTIFY with
 * a periodic re-read as fallback. Private keys are sealed (AES-256-GCM) before they are written.
 * Signing and verifying read memory only, so they go on while the database is away.
 */
export function createPostgresKeyStore(options: PostgresKeyStoreOptions): KeyStore {
  const { sealer, clock, logger } = options;
  const defaultAlg = options.defaultAlg ?? 'RS256';
  const maxKeys = options.maxKeys ?? Number.POSITIVE_INFINITY;
  const pollIntervalMs = options.pollIntervalMs ?? 5000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 2000;
  const generateKey = options.generateKey ?? generateSigningKey;
  const maxVersions = options.maxVersions ?? Number.POSITIVE_INFINITY;
  const memory = createEntryMemory();
  const queue = createKeyedQueue();
  /** The database revision each known keyId was read at. */
  const revisions = new Map<string, number>();
  /** Opened versions by keyId and kid: a re-read decrypts and imports only what is new. */
  const opened = new Map<string, KeyVersion>();
  const pool = options.pool ?? new pg.Pool({ connectionString: options.url, connectionTimeoutMillis: connectTimeoutMs, max: 10, statement_timeout: 10_000 });
  const reachability = createReachability({ pool, logger, what: 'key database', meanwhile: 'signing goes on with the keys held; creating and rotating answer 503' });
  const setReachable = reachability.mark;
  let loaded = false;
  let closed = false;
  let listener: pg.Client | undefined;
  let reconnect: NodeJS.Timeout | undefined;
  let poller: NodeJS.Timeout | undefined;

  async function versionOf(row: VersionRow): Promise<KeyVersion> {
    const createdAt = row.created_at;
    const activateAt = row.activate_at ?? undefined;
    const retireAt = row.retire_at ?? undefined;
    const cacheKey = `${row.key_id}\0${row.kid}`;
    const known = opened.get(cacheKey);
    if (known) {
      if (known.retireAt?.getTime() === retireAt?.getTime() && known.activateAt?.getTime() === activateAt?.getTime()) return known;
      return Object.freeze({ ...known, activateAt, retireAt });
    }
    const jwk = sealer.open(row.private_key, row.key_id, row.kid);
    const version = await toVersion(importStoredJwk(jwk), row.alg, { kid: row.alg === 'HS256' ? row.kid : undefined, createdAt, activateAt, retireAt });
    if (version.kid !== row.kid) throw new Error('stored kid does not match the key');
    opened.set(cacheKey, version);
    return version;
  }

  /** Builds entries from rows ordered by keyId, newest version first; a key that fails to open is logged and skipped. */
  async function entriesOf(rows: VersionRow[]): Promise<{ entries: Array<{ entry: KeyEntry; revision: number }>; skipped: string[] }> {
    const byKey = new Map<string, VersionRow[]>();
    for (const row of rows) byKey.set(row.key_id, [...(byKey.get(row.key_id) ?? []), row]);
    const entries: Array<{ entry: KeyEntry; revision: number }> = [];
    const skipped: string[] = [];
    for (const [keyId, list] of byKey) {
      try {
        const versions = await Promise.all(list.map(versionOf));
        const [current, ...previous] = versions;
        const entry = withRotationInterval(Object.freeze({ keyId, alg: list[0]!.alg, current: current!, previous: Object.freeze(previous) }), list[0]!.rotation_interval ?? undefined);
        entries.push({ entry, revision: Number(list[0]!.revision) });
      } catch (err) {
        skipped.push(keyId);
        logger.warn({ keyId, reason: (err as Error).message }, 'skipped unreadable key');
      }
    }
    return { entries, skipped };
  }

  /** Reads one keyId from the database (undefined when absent). */
  async function readKey(keyId: string, client: pg.Pool | pg.PoolClient = pool): Promise<{ entry: KeyEntry; revision: number } | undefined> {
    const { rows } = await client.query<VersionRow>(`${SELECT_VERSIONS} WHERE k.key_id = $1 ORDER BY v.seq DESC`, [keyId]);
    const { entries, skipped } = await entriesOf(rows);
    if (skipped.length > 0) throw new Error(`key "${keyId}" cannot be opened`);
    return entries[0];
  }

  const keep = (found: { entry: KeyEntry; revision: number }, origin: 'local' | 'reload'): KeyEntry => {
    // Re-reads run concurrently (notifications, the poll, unknown kids): one that read an older
    // revision and finishes last must not put the older state back.
    const held = memory.entries.get(found.entry.keyId);
    if (held && (revisions.get(found.entry.keyId) ?? 0) > found.revision) return held;
    revisions.set(found.entry.keyId, found.revision);
    return memory.remember(found.entry, origin);
  };

  /** Re-reads a keyId that changed elsewhere (a notification, the poll, an unknown kid). */
  async function refresh(keyId: string): Promise<KeyEntry | undefined> {
    const found = await readKey(keyId);
    return found ? keep(found, 'reload') : memory.entries.get(keyId);
  }

  /**
   * The fallback for missed notifications: compares the count and revision sum of the keys
   * table with what this process read (revisions only grow and keys are never deleted, so any
   * change moves one of them), and re-reads only the keyIds whose revision moved.
   */
  async function sync(): Promise<void> {
    const { rows } = await pool.query<{ n: number; total: string }>('SELECT count(*)::int AS n, coalesce(sum(revision), 0)::text AS total FROM jf_keys');
    setReachable(true);
    let total = 0;
    for (const r of revisions.values()) total += r;
    if (rows[0]!.n === revisions.size && Number(rows[0]!.total) === total) return;
    const all = await pool.query<{ key_id: string; revision: string }>('SELECT key_id, revision FROM jf_keys');
    for (const row of all.rows) {
      if (revisions.get(row.key_id) !== Number(row.revision)) await refresh(row.key_id).catch((err: Error) => logger.warn({ keyId: row.key_id, reason: err.message }, 'key re-read failed'));
    }
  }

  /** Keeps one LISTEN connection open, reconnecting every second while the database is away. */
  async function listen(): Promise<void> {
    reconnect = undefined;
    if (closed) return;
    const client = new pg.Client({ connectionString: options.url, connectionTimeoutMillis: connectTimeoutMs });
    const retry = (reason: string) => {
      setReachable(false, reason);
      if (listener === client) listener = undefined;
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (!closed && !reconnect) reconnect = setTimeout(() => void listen(), 1000);
    };
    client.on('error', (err) => retry(err.message));
    client.on('end', () => {
      if (!closed && listener === client) retry('connection ended');
    });
    client.on('notification', (message) => {
      if (message.payload) void refresh(message.payload).catch((err: Error) => logger.warn({ keyId: message.payload, reason: err.message }, 'key re-read failed'));
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
      listener = client;
      setReachable(true);
      // Whatever changed while we were not listening.
      await sync();
    } catch (err) {
      retry((err as Error).message);
    }
  }

  const transaction = <T>(work: (client: pg.PoolClient) => Promise<T>) => inTransaction(pool, work);

  const insertVersion = (client: pg.PoolClient, keyId: string, version: KeyVersion) =>
    client.query('INSERT INTO jf_key_versions (key_id, kid, alg, created_at, activate_at, retire_at, private_key) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
      keyId,
      version.kid,
      version.alg,
      version.createdAt,
      version.activateAt ?? null,
      version.retireAt ?? null,
      sealer.seal(version.signingKey.export({ format: 'jwk' }), keyId, version.kid),
    ]);

  /** Remembers a version this process made, so a re-read of its own change neither decrypts nor churns. */
  const own = (keyId: string, version: KeyVersion) => opened.set(`${keyId}\0${version.kid}`, version);

  /** Runs a database operation for a request: an outage answers 503, any other error passes as it is. */
  const guarded = <T>(work: () => Promise<T>): Promise<T> => reachability.guard(work, unavailable);

  return {
    async load() {
      await migrate(pool);
      const { rows } = await pool.query<VersionRow>(`${SELECT_VERSIONS} ORDER BY k.key_id, v.seq DESC`);
      const { entries, skipped } = await entriesOf(rows);
      for (const found of entries) keep(found, 'reload');
      memory.bump();
      loaded = true;
      setReachable(true);
      await listen();
      poller = setInterval(() => {
        sync().catch((err: Error) => setReachable(false, err.message));
      }, pollIntervalMs);
      poller.unref();
      logger.info({ keys: memory.size(), skipped: skipped.length }, 'keys loaded');
      return { loaded: memory.size(), skipped };
    },
    isLoaded: () => loaded,
    ...memoryReaders(memory),

    async get(keyId) {
      return memory.entries.get(keyId) ?? guarded(() => refresh(keyId));
    },

    async reload(keyId) {
      // An unknown kid must not fail verification because the database is away: keep what we hold.
      return refresh(keyId).catch(() => memory.entries.get(keyId));
    },

    getOrCreate(keyId, alg) {
      const known = memory.entries.get(keyId);
      if (known) return Promise.resolve({ entry: known, created: false });
      return queue(keyId, () =>
        guarded(async () => {
          const again = memory.entries.get(keyId);
          if (again) return { entry: again, created: false };
          const existing = await readKey(keyId);
          if (existing) return { entry: keep(existing, 'reload'), created: false };
          if (memory.size() >= maxKeys) {
            throw new AppError('key_limit_reached', 403, `This factory holds ${memory.size()} keys, its MAX_KEYS limit: it creates no more. Use an existing keyId, or raise MAX_KEYS.`, {
              details: { maxKeys },
            });
          }
          const chosen = alg ?? defaultAlg;
          const now = clock();
          const version = await toVersion(await generateKey(chosen), chosen, { createdAt: now });
          const won = await transaction(async (client) => {
            const inserted = await client.query('INSERT INTO jf_keys (key_id, alg, created_at) VALUES ($1, $2, $3) ON CONFLICT (key_id) DO NOTHING', [keyId, chosen, now]);
            if (inserted.rowCount !== 1) return false;
            await insertVersion(client, keyId, version);
            await client.query('SELECT pg_notify($1, $2)', [CHANGE_CHANNEL, keyId]);
            return true;
          });
          if (!won) {
            // Another replica created it first: its key wins, ours is discarded unused.
            const winner = await readKey(keyId);
            if (!winner) throw new Error('key vanished after a lost create');
            return { entry: keep(winner, 'reload'), created: false };
          }
          own(keyId, version);
          const entry: KeyEntry = Object.freeze({ keyId, alg: chosen, current: version, previous: Object.freeze([]) });
          keep({ entry, revision: 1 }, 'local');
          logger.info({ keyId, kid: version.kid, alg: chosen }, 'key created');
          return { entry, created: true };
        }),
      );
    },

    rotate(keyId, publishAheadSeconds = 0) {
      // A rotation applies over the revision this replica held when the request arrived: if
      // the key moved meanwhile (another request, here or on another replica, rotated it), that
      // rotation won and this request answers its kid instead of rotating a second time.
      const heldAtArrival = revisions.get(keyId);
      return queue(keyId, () =>
        guarded(async () => {
          const current = await pool.query<{ revision: string; alg: Algorithm }>('SELECT revision, alg FROM jf_keys WHERE key_id = $1', [keyId]);
          if (current.rows.length === 0) return undefined;
          const { alg } = current.rows[0]!;
          const seen = heldAtArrival ?? Number(current.rows[0]!.revision);
          const now = clock();
          const activateAt = publishAheadSeconds > 0 ? new Date(now.getTime() + publishAheadSeconds * 1000) : undefined;
          const retireAt = new Date((activateAt ?? now).getTime() + options.retireAfterSeconds * 1000);
          const version = await toVersion(await generateKey(alg), alg, { createdAt: now, activateAt });
          own(keyId, version);
          const outcome = await transaction(async (client) => {
            const locked = await client.query<{ revision: string }>('SELECT revision FROM jf_keys WHERE key_id = $1 FOR UPDATE', [keyId]);
            // Someone rotated between our read and our lock: theirs wins, and we answer it.
            if (Number(locked.rows[0]?.revision) !== seen) return undefined;
            const held = await readKey(keyId, client);
            if (!held) return undefined;
            const room = versionsKeptByRotation(held.entry, now, activateAt ?? now, maxVersions);
            if ('refused' in room) throw rotationRefused(keyId, room.refused, now, maxVersions);
            // Versions past their retireAt, and ones published ahead that never signed and made way for the new one.
            await client.query('DELETE FROM jf_key_versions WHERE key_id = $1 AND NOT (kid = ANY($2::text[]))', [keyId, room.kept.map((v) => v.kid)]);
            await client.query('UPDATE jf_key_versions SET retire_at = $2 WHERE key_id = $1 AND retire_at IS NULL', [keyId, retireAt]);
            await insertVersion(client, keyId, version);
            const bumped = await client.query<{ revision: string }>('UPDATE jf_keys SET revision = revision + 1 WHERE key_id = $1 RETURNING revision', [keyId]);
            await client.query('SELECT pg_notify($1, $2)', [CHANGE_CHANNEL, keyId]);
            const before = await readKey(keyId, client);
            return before && { entry: before.entry, revision: Number(bumped.rows[0]!.revision) };
          });
          if (!outcome) {
            const winner = await readKey(keyId);
            return winner && keep(winner, 'reload');
          }
          const entry = keep(outcome, 'local');
          logger.info({ keyId, kid: version.kid, activateAt: activateAt?.toISOString(), retireAt: retireAt.toISOString() }, 'key rotated');
          return entry;
        }),
      );
    },

    setRotationInterval(keyId, seconds) {
      return queue(keyId, () =>
        guarded(async () => {
          const found = await transaction(async (client) => {
            const updated = await client.query('UPDATE jf_keys SET rotation_interval = $2, revision = revision + 1 WHERE key_id = $1', [keyId, seconds ?? null]);
            if (updated.rowCount !== 1) return undefined;
            await client.query('SELECT pg_notify($1, $2)', [CHANGE_CHANNEL, keyId]);
            return readKey(keyId, client);
          });
          return found && keep(found, 'local');
        }),
      );
    },

    async reseal() {
      const { rows } = await pool.query<{ key_id: string; kid: string; private_key: string }>('SELECT key_id, kid, private_key FROM jf_key_versions');
      let resealed = 0;
      let unreadable = 0;
      for (const row of rows) {
        if (sealer.refOf(row.private_key) === sealer.keyRef) continue;
        let jwk;
        try {
          jwk = sealer.open(row.private_key, row.key_id, row.kid);
        } catch (err) {
          unreadable += 1;
          logger.warn({ keyId: row.key_id, kid: row.kid, reason: (err as Error).message }, 'cannot re-encrypt a key version');
          continue;
        }
        const again = sealer.seal(jwk, row.key_id, row.kid);
        // Conditional: a version rotated away or resealed meanwhile is left as it is.
        const updated = await pool.query('UPDATE jf_key_versions SET private_key = $4 WHERE key_id = $1 AND kid = $2 AND private_key = $3', [row.key_id, row.kid, row.private_key, again]);
        resealed += updated.rowCount ?? 0;
      }
      return { versions: rows.length, resealed, unreadable };
    },

    async dump() {
      // Every create and rotation is committed before it is answered: nothing is left to write.
      return memory.list();
    },

    health() {
      const missing = [...(loaded ? [] : ['keys not loaded']), ...(reachability.isReachable() ? [] : ['key database'])];
      return { ready: missing.length === 0, missing };
    },

    async close() {
      closed = true;
      reachability.close();
      if (poller) clearInterval(poller);
      if (reconnect) clearTimeout(reconnect);
      const client = listener;
      listener = undefined;
      await client?.end().catch(() => undefined);
      if (!options.pool) await pool.end();
    },
  };
}
