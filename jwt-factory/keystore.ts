import { createPrivateKey } from 'node:crypto';
import { mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../lib/errors.js';
import { readIfExists, readIfExistsSync, writeFileAtomic } from '../lib/files.js';
import { KEY_ID_PATTERN } from '../lib/keyid.js';
import type { Logger } from '../lib/logger.js';
import type { Algorithm } from './config.js';
import type { KeySealer } from './store/encryption.js';
import type { ChangeListener, KeyStore } from './store/types.js';
import { fingerprint, generateSigningKey, isActive, parseKeyFile, serializeEntry, toVersion, type Clock, type KeyEntry } from './keys.js';

/** Errors of a key folder that cannot take a new file: read-only mount, permissions, full disk. */
const NOT_WRITABLE: ReadonlySet<string> = new Set(['EROFS', 'EACCES', 'EPERM', 'ENOSPC', 'EDQUOT']);

export type { ChangeListener, KeyStore } from './store/types.js';

export interface KeyStoreOptions {
  dir: string;
  clock: Clock;
  logger: Logger;
  /** The algorithm of a key created without `?alg=`. */
  defaultAlg?: Algorithm;
  /** Seconds a rotated-out key keeps verifying: longest token lifetime + clock tolerance. */
  retireAfterSeconds: number;
  /** The most keyIds this store creates (loading is never limited). Default: no limit. */
  maxKeys?: number;
  /** Seals private keys in the files (KEY_ENCRYPTION_KEY); without it they are plain JWKs in 0600 files. */
  sealer?: KeySealer;
}

/** The keyId a key store file name stands for (`<keyId>.json`, or the original `<keyId>-private.pem`); undefined for any other file. */
export function keyIdOfFile(name: string): string | undefined {
  if (name.startsWith('.')) return undefined;
  return /^(.+?)(\.json|-private\.pem)$/.exec(name)?.[1];
}

/** Keys loaded at once at start-up: enough to keep the thread pool busy with their kid checks. */
const LOAD_CONCURRENCY = 32;

/** The text of a keyId's file: the JSON store, or the original sample's PEM. */
interface KeyFiles {
  json?: string;
  pem?: string;
}

/**
 * The factory's key store: per keyId one algorithm and its versions, persisted as
 * `<dir>/<keyId>.json` (mode 0600, atomic writes). Also reads the original sample's
 * `<keyId>-private.pem` files (PKCS#1, RS256). Holds no module-level state.
 */
export function createKeyStore(options: KeyStoreOptions): KeyStore {
  const { dir, clock, logger } = options;
  const defaultAlg = options.defaultAlg ?? 'RS256';
  const maxKeys = options.maxKeys ?? Number.POSITIVE_INFINITY;
  const entries = new Map<string, KeyEntry>();
  const locks = new Map<string, Promise<unknown>>();
  const listeners: ChangeListener[] = [];
  let loaded = false;
  let revision = 0;

  const jsonPath = (keyId: string) => path.join(dir, `${keyId}.json`);
  const pemPath = (keyId: string) => path.join(dir, `${keyId}-private.pem`);

  const changed = (keyId: string, origin: 'local' | 'reload') => {
    revision += 1;
    for (const listener of listeners) listener(keyId, origin);
  };

  /**
   * The one way an entry enters the map: caches (the JWKS) hear of it when the keyId is new
   * or its versions moved, never when a re-read finds the same versions (tokens with made-up
   * kids trigger re-reads, and must not churn the JWKS cache). Returns the entry kept.
   */
  const remember = (entry: KeyEntry, origin: 'local' | 'reload'): KeyEntry => {
    const known = entries.get(entry.keyId);
    if (known && fingerprint(known) === fingerprint(entry)) return known;
    entries.set(entry.keyId, entry);
    changed(entry.keyId, origin);
    return entry;
  };

  /** What a keyId's file was when last read: writes are renames, so a new file has a new inode. */
  const stamps = new Map<string, string>();
  async function fileStamp(keyId: string): Promise<string | undefined> {
    for (const file of [jsonPath(keyId), pemPath(keyId)]) {
      const s = await stat(file).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
      if (s) return `${file}:${s.ino}:${s.mtimeMs}:${s.size}`;
    }
    return undefined;
  }

  /** Runs `task` after every earlier task on the same keyId (one create or rotate at a time). */
  function withLock<T>(keyId: string, task: () => Promise<T>): Promise<T> {
    const previous = locks.get(keyId) ?? Promise.resolve();
    const next = previous.then(task, task);
    const settled = next.catch(() => undefined);
    locks.set(keyId, settled);
    void settled.then(() => {
      if (locks.get(keyId) === settled) locks.delete(keyId);
    });
    return next;
  }

  /** Builds an entry from a keyId's file text: the JSON store, else the original PEM format. Undefined when absent. */
  async function entryFromFiles(keyId: string, files: KeyFiles): Promise<KeyEntry | undefined> {
    if (files.json !== undefined) return parseKeyFile(files.json, keyId, options.sealer);
    if (files.pem === undefined) return undefined;
    // The original sample wrote PKCS#1 "BEGIN RSA PRIVATE KEY" and signed RS256.
    const version = await toVersion(createPrivateKey(files.pem), 'RS256', { createdAt: new Date(0) });
    return Object.freeze({ keyId, alg: 'RS256' as const, current: version, previous: Object.freeze([]) });
  }

  /** Reads one keyId from disk: the JSON store first, else the original PEM format. Undefined when absent. */
  async function readFromDisk(keyId: string): Promise<KeyEntry | undefined> {
    const json = await readIfExists(jsonPath(keyId));
    return entryFromFiles(keyId, json !== undefined ? { json } : { pem: await readIfExists(pemPath(keyId)) });
  }

  /**
   * The same read for start-up only, before the server listens, so no request waits on it:
   * readFileSync costs a tenth of the CPU of fs.promises.readFile per small file (0.02 vs
   * 0.24 ms measured), which is most of the start-up time with 10,000 keys (issue 5).
   */
  function readFilesSync(keyId: string): KeyFiles {
    const json = readIfExistsSync(jsonPath(keyId));
    return json !== undefined ? { json } : { pem: readIfExistsSync(pemPath(keyId)) };
  }

  /** Reads a keyId from disk, logging and skipping it (by file name) when it is unreadable. */
  async function tryReadFromDisk(keyId: string): Promise<KeyEntry | undefined> {
    try {
      return await readFromDisk(keyId);
    } catch (err) {
      logger.warn({ keyId, file: `${keyId}.json or ${keyId}-private.pem`, reason: (err as Error).message }, 'skipped unreadable key file');
      return undefined;
    }
  }

  async function persist(entry: KeyEntry, mode: 'replace' | 'create'): Promise<void> {
    try {
      await writeFileAtomic(jsonPath(entry.keyId), serializeEntry(entry, options.sealer), { mode: 0o600, noClobber: mode === 'create', dirMode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === undefined || !NOT_WRITABLE.has(code)) throw err;
      logger.error({ keyId: entry.keyId, dir, reason: code }, 'key store folder is not writable');
      throw new AppError(
        'key_store_not_writable',
        503,
        `The key store cannot be written (${code}): keys cannot be created or rotated on this factory. Create them with a factory whose KEYS_DIR is writable, then mount that folder here.`,
        { expose: true, details: { reason: code }, cause: err },
      );
    }
  }

  return {
    /** Loads every key file of the directory; unreadable files are logged by name and skipped. */
    async load(): Promise<{ loaded: number; skipped: string[] }> {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const names = await readdir(dir);
      const skipped: string[] = [];
      const keyIds = new Set<string>();
      for (const name of names) {
        const keyId = keyIdOfFile(name);
        if (keyId === undefined) continue;
        if (!KEY_ID_PATTERN.test(keyId)) {
          skipped.push(name);
          logger.warn({ file: name }, 'skipped key file whose name is not a valid keyId');
          continue;
        }
        keyIds.add(keyId);
      }
      const ids = [...keyIds];
      let next = 0;
      // A bounded pool of loaders: the kid check (jose's thumbprint) is asynchronous, and one
      // key at a time would leave start-up waiting on it for every key in turn.
      const reader = async () => {
        while (next < ids.length) {
          const keyId = ids[next]!;
          next += 1;
          try {
            const entry = await entryFromFiles(keyId, readFilesSync(keyId));
            if (entry) entries.set(keyId, entry);
          } catch (err) {
            const file = names.includes(`${keyId}.json`) ? `${keyId}.json` : `${keyId}-private.pem`;
            skipped.push(file);
            logger.warn({ file, reason: (err as Error).message }, 'skipped unreadable key file');
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(LOAD_CONCURRENCY, ids.length) }, reader));
      skipped.sort();
      loaded = true;
      revision += 1;
      logger.info({ keys: entries.size, skipped: skipped.length }, 'keys loaded');
      return { loaded: entries.size, skipped };
    },

    /** True once `load` finished. */
    isLoaded: () => loaded,

    /** A counter that moves on every change (for caches built from the store). */
    revision: () => revision,

    /** Subscribes to changes of any keyId. */
    onChange(listener: ChangeListener): void {
      listeners.push(listener);
    },

    /** The keyIds known to this process. */
    list: (): string[] => [...entries.keys()].sort(),

    /** How many keyIds this process knows (cheap: /readyz asks it on every probe). */
    size: (): number => entries.size,

    /** Every entry known to this process, by keyId (a stable order keeps the JWKS ETag equal across workers). */
    entries: (): KeyEntry[] => [...entries.values()].sort((a, b) => (a.keyId < b.keyId ? -1 : 1)),

    /** The entry for keyId; on a miss, checks the disk (another worker may have created it). */
    async get(keyId: string): Promise<KeyEntry | undefined> {
      const known = entries.get(keyId);
      if (known) return known;
      const fromDisk = await tryReadFromDisk(keyId);
      return fromDisk && remember(fromDisk, 'reload');
    },

    /**
     * Re-reads one keyId from disk (another worker changed it). /verify calls it for every
     * token whose kid is unknown, so a file unchanged since the last read costs a stat only.
     */
    async reload(keyId: string): Promise<KeyEntry | undefined> {
      const known = entries.get(keyId);
      const stamp = await fileStamp(keyId);
      if (known && stamp !== undefined && stamps.get(keyId) === stamp) return known;
      const fromDisk = await tryReadFromDisk(keyId);
      if (stamp !== undefined) stamps.set(keyId, stamp);
      return fromDisk ? remember(fromDisk, 'reload') : known;
    },

    /**
     * Returns the keyId's entry, creating and persisting a key when it is missing. An existing
     * key is never replaced; concurrent creates of one keyId (in this process, or across
     * processes thanks to the create-only link) end with one key.
     */
    getOrCreate(keyId: string, alg?: Algorithm): Promise<{ entry: KeyEntry; created: boolean }> {
      // Fast path for every issue after the first: a known key needs no lock and no disk.
      const known = entries.get(keyId);
      if (known) return Promise.resolve({ entry: known, created: false });
      return withLock(keyId, async () => {
        const known = entries.get(keyId);
        if (known) return { entry: known, created: false };
        const existing = await tryReadFromDisk(keyId);
        if (existing) return { entry: remember(existing, 'reload'), created: false };
        // Every unknown keyId on /issueToken creates a key: a bound keeps callers from filling the disk.
        if (entries.size >= maxKeys) {
          throw new AppError('key_limit_reached', 403, `This factory holds ${entries.size} keys, its MAX_KEYS limit: it creates no more. Use an existing keyId, or raise MAX_KEYS.`, {
            details: { maxKeys },
          });
        }
        const chosen = alg ?? defaultAlg;
        const version = await toVersion(await generateSigningKey(chosen), chosen, { createdAt: clock() });
        const entry: KeyEntry = Object.freeze({ keyId, alg: chosen, current: version, previous: Object.freeze([]) });
        try {
          await persist(entry, 'create');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          // Another process created it first: theirs wins, ours is discarded unused.
          const winner = await readFromDisk(keyId);
          if (!winner) throw err;
          return { entry: remember(winner, 'reload'), created: false };
        }
        remember(entry, 'local');
        logger.info({ keyId, kid: version.kid, alg: chosen }, 'key created');
        return { entry, created: true };
      });
    },

    /**
     * Rotates keyId: a new key of the same algorithm is published now and signs from now +
     * `publishAheadSeconds` (default 0: at once); the keys signing until then keep verifying
     * and stay published until that moment + retireAfterSeconds. Undefined for an unknown keyId.
     */
    rotate(keyId: string, publishAheadSeconds = 0): Promise<KeyEntry | undefined> {
      return withLock(keyId, async () => {
        // Read the disk first: another worker may have rotated since we cached the entry.
        const before = (await tryReadFromDisk(keyId)) ?? entries.get(keyId);
        if (!before) return undefined;
        const now = clock();
        const activateAt = publishAheadSeconds > 0 ? new Date(now.getTime() + publishAheadSeconds * 1000) : undefined;
        // Whatever may sign until the new key takes over must verify a full token lifetime after that.
        const retireAt = new Date((activateAt ?? now).getTime() + options.retireAfterSeconds * 1000);
        const version = await toVersion(await generateSigningKey(before.alg), before.alg, { createdAt: now, activateAt });
        const kept = [before.current, ...before.previous]
          .filter((v) => isActive(v, now))
          .map((v) => (v.retireAt === undefined ? Object.freeze({ ...v, retireAt }) : v));
        const entry: KeyEntry = Object.freeze({ keyId, alg: before.alg, current: version, previous: Object.freeze(kept) });
        await persist(entry, 'replace');
        remember(entry, 'local');
        logger.info({ keyId, kid: version.kid, activateAt: activateAt?.toISOString(), retiredKid: before.current.kid, retireAt: retireAt.toISOString() }, 'key rotated');
        return entry;
      });
    },

    /**
     * The original sample's dump: makes sure every known key is on disk and returns the keyIds.
     * Keys are persisted at creation, so this only rewrites a file that went missing or unreadable;
     * a readable file is never overwritten (another worker may hold a newer rotation).
     */
    async dump(): Promise<string[]> {
      const ids: string[] = [];
      for (const keyId of [...entries.keys()]) {
        await withLock(keyId, async () => {
          const onDisk = await tryReadFromDisk(keyId);
          if (onDisk) {
            remember(onDisk, 'reload');
            return;
          }
          const entry = entries.get(keyId);
          if (!entry) return;
          await persist(entry, 'replace');
          logger.info({ keyId, kid: entry.current.kid }, 'key file rewritten');
        });
        ids.push(keyId);
      }
      return ids.sort();
    },

    health: () => ({ ready: loaded, missing: loaded ? [] : ['keys not loaded'] }),

    /** Nothing to release: every write completes before it is answered. */
    close: async () => undefined,
  };
}
