import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
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

/** The key store KEY_STORE names: KEYS_DIR files, or the PostgreSQL database of a postgres:// URL. */
export function openKeyStore(config: FactoryConfig, runtime: { clock: Clock; logger: Logger; generateKey?: (alg: Algorithm) => Promise<KeyObject> }): KeyStore {
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
  return createPostgresKeyStore({ ...common, url: config.KEY_STORE, sealer, pollIntervalMs: config.KEY_STORE_POLL_INTERVAL * 1000 });
}

/** The OIDC provider's store beside the keys, what it lacks to be ready, and how to close it. */
export interface OpenedOidcStore {
  store: OidcStore;
  health(): StoreHealth;
  close(): Promise<void>;
}

/**
 * The OIDC store KEY_STORE implies: `<KEYS_DIR>/oidc/state.json` for the file store (one
 * process), the PostgreSQL database of the keys for a postgres:// URL (every replica and worker).
 */
export async function openOidcStore(config: FactoryConfig, runtime: { clock: Clock; logger: Logger }): Promise<OpenedOidcStore> {
  if (config.KEY_STORE === 'file') {
    const store = createFileOidcStore({ dir: path.join(path.resolve(config.KEYS_DIR), 'oidc'), clock: runtime.clock });
    return { store, health: () => ({ ready: true, missing: [] }), close: async () => undefined };
  }
  const store = createPostgresOidcStore({ url: config.KEY_STORE, clock: runtime.clock, logger: runtime.logger });
  await store.open();
  return {
    store,
    health: () => (store.isReachable() ? { ready: true, missing: [] } : { ready: false, missing: ['OIDC database'] }),
    close: () => store.close(),
  };
}
