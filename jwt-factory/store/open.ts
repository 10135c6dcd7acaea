import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { PoolSettings, PoolSet } from '../../lib/postgres.js';
import type { KeyObject } from 'node:crypto';
import type { Algorithm, FactoryConfig } from '../config.js';
import type { Clock } from '../keys.js';
import { createKeyStore } from '../keystore.js';
import { createKeySealer, parseEncryptionKey, type KeySealer } from './encryption.js';
import { createFileOidcStore, type OidcStore } from '../oidc/store.js';
import { createPostgresOidcStore } from '../oidc/store-postgres.js';
import { createPostgresKeyStore } from './postgres.js';
import type { KeyStore, StoreHealth } from './types.js';

/** The sealer of KEY_ENCRYPTION_KEY (or the file KEY_ENCRYPTION_KEY_FILE names) and KEY_ENCRYPTION_KEY_OLD; undefined when none is set. */
export function sealerFromConfig(config: FactoryConfig): KeySealer | undefined {
  let text = config.KEY_ENCRYPTION_KEY;
  if (text === undefined && config.KEY_ENCRYPTION_KEY_FILE !== undefined) {
    try {
      text = readFileSync(config.KEY_ENCRYPTION_KEY_FILE, 'utf8');
      parseEncryptionKey(text);
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ? `cannot be read (${(err as NodeJS.ErrnoException).code})` : `its content ${(err as Error).message}`;
      throw new ConfigError('KEY_ENCRYPTION_KEY_FILE', `${config.KEY_ENCRYPTION_KEY_FILE} ${reason}`);
    }
  }
  if (text === undefined) return undefined;
  const older = config.KEY_ENCRYPTION_KEY_OLD === undefined ? [] : [parseEncryptionKey(config.KEY_ENCRYPTION_KEY_OLD)];
  return createKeySealer(parseEncryptionKey(text), older);
}

/**
 * The one pool a factory process opens on its database, shared by the key store and the OIDC
 * store. 10: the OIDC state takes the most (a few queries per login or token request; 5 served
 * 616 code pairs/s), the keys take one only to create, rotate or re-read; a burst past 10 waits
 * up to 2 s for a free connection before it answers 503. With the LISTEN connection: 11 per process.
 */
export const FACTORY_POOL: PoolSettings = Object.freeze({ max: 10, connectTimeoutMs: 2000, statementTimeoutMs: 10_000 });

/**
 * The key store KEY_STORE names: KEYS_DIR files, or the PostgreSQL database of a postgres:// URL
 * (its pool from `pools` when given, so the OIDC store can share it).
 */
export function openKeyStore(config: FactoryConfig, runtime: { clock: Clock; logger: Logger; generateKey?: (alg: Algorithm) => Promise<KeyObject>; pools?: PoolSet }): KeyStore {
  const sealer = sealerFromConfig(config);
  const common = {
    clock: runtime.clock,
    logger: runtime.logger,
    defaultAlg: config.ALGORITHM,
    retireAfterSeconds: config.MAX_TOKEN_TTL + config.CLOCK_TOLERANCE,
    maxKeys: config.MAX_KEYS,
    maxVersions: config.MAX_KEY_VERSIONS,
    ...(runtime.generateKey ? { generateKey: runtime.generateKey } : {}),
  };
  if (config.KEY_STORE === 'file') return createKeyStore({ ...common, dir: path.resolve(config.KEYS_DIR), sealer });
  // The schema refuses a PostgreSQL store without a key; this keeps the type honest.
  if (!sealer) throw new ConfigError('KEY_ENCRYPTION_KEY', 'is required with a PostgreSQL KEY_STORE');
  return createPostgresKeyStore({
    ...common,
    url: config.KEY_STORE,
    ...(runtime.pools ? { pool: runtime.pools.poolFor(config.KEY_STORE) } : {}),
    sealer,
    pollIntervalMs: config.KEY_STORE_POLL_INTERVAL * 1000,
  });
}

/** The OIDC provider's store beside the keys, what it lacks to be ready, and how to close it. */
export interface OpenedOidcStore {
  store: OidcStore;
  health(): StoreHealth;
  close(): Promise<void>;
}

/**
 * The OIDC store KEY_STORE implies: `<KEYS_DIR>/oidc/state.json` for the file store (one
 * process), the PostgreSQL database of the keys for a postgres:// URL (every replica and worker),
 * through the keys' pool when `pools` is the set openKeyStore had.
 */
export async function openOidcStore(config: FactoryConfig, runtime: { clock: Clock; logger: Logger; pools?: PoolSet }): Promise<OpenedOidcStore> {
  if (config.KEY_STORE === 'file') {
    const store = createFileOidcStore({ dir: path.join(path.resolve(config.KEYS_DIR), 'oidc'), clock: runtime.clock });
    return { store, health: () => ({ ready: true, missing: [] }), close: async () => undefined };
  }
  const store = createPostgresOidcStore({ url: config.KEY_STORE, ...(runtime.pools ? { pool: runtime.pools.poolFor(config.KEY_STORE) } : {}), clock: runtime.clock, logger: runtime.logger });
  await store.open();
  return {
    store,
    health: () => (store.isReachable() ? { ready: true, missing: [] } : { ready: false, missing: ['OIDC database'] }),
    close: () => store.close(),
  };
}
