import type { Algorithm } from '../config.js';
import type { KeyEntry } from '../keys.js';

/** Why the store changed: `local` when this process made the change (a worker then tells its peers). */
export type ChangeListener = (keyId: string, origin: 'local' | 'reload') => void;

/** What a store lacks to be ready (each names a dependency /readyz reports). */
export interface StoreHealth {
  ready: boolean;
  missing: string[];
}

/**
 * The factory's keys behind one interface, whatever holds them (KEYS_DIR files or
 * PostgreSQL). Reads answer from memory, so signing never waits on the disk or the database;
 * creates and rotations are durable before they are answered.
 */
export interface KeyStore {
  /** Loads every key; unreadable ones are logged and skipped (by name). */
  load(): Promise<{ loaded: number; skipped: string[] }>;
  /** True once `load` finished. */
  isLoaded(): boolean;
  /** A counter that moves on every change (for caches built from the store). */
  revision(): number;
  /** Subscribes to changes of any keyId. */
  onChange(listener: ChangeListener): void;
  /** The keyIds known to this process. */
  list(): string[];
  /** How many keyIds this process knows. */
  size(): number;
  /** Every entry known to this process, by keyId (a stable order keeps the JWKS ETag equal across replicas). */
  entries(): KeyEntry[];
  /** The entry for keyId; on a miss, asks the backing store (another process may have created it). */
  get(keyId: string): Promise<KeyEntry | undefined>;
  /** Re-reads one keyId (another process may have rotated it); never fails for an unreachable backend. */
  reload(keyId: string): Promise<KeyEntry | undefined>;
  /** Returns the keyId's entry, creating it when missing; of racing creates one wins and all answer its key. */
  getOrCreate(keyId: string, alg?: Algorithm): Promise<{ entry: KeyEntry; created: boolean }>;
  /** Rotates keyId; of racing rotations one wins and all answer its kid. Undefined for an unknown keyId. */
  rotate(keyId: string, publishAheadSeconds?: number): Promise<KeyEntry | undefined>;
  /** Sets keyId's own rotation interval in seconds (undefined: the factory's applies again); undefined for an unknown keyId. */
  setRotationInterval(keyId: string, seconds: number | undefined): Promise<KeyEntry | undefined>;
  /** Rewrites every version not yet sealed with the current encryption key (after KEY_ENCRYPTION_KEY changed); counts what no given key opens. */
  reseal(): Promise<{ versions: number; resealed: number; unreadable: number }>;
  /** Makes sure every known key is persisted; returns the keyIds. */
  dump(): Promise<string[]>;
  /** What the store lacks to be ready. */
  health(): StoreHealth;
  /** Releases connections and timers. */
  close(): Promise<void>;
}
