import { createPrivateKey, type KeyObject } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../lib/errors.js';
import { readIfExists, readIfExistsSync, writeFileAtomic } from '../lib/files.js';
import { KEY_ID_PATTERN } from '../lib/keyid.js';
import type { Logger } from '../lib/logger.js';
import type { Algorithm } from './config.js';
import type { KeySealer } from './store/encryption.js';
import type { KeyStore } from './store/types.js';
import { fingerprint, generateSigningKey, parseKeyFile, serializeEntry, toVersion, versionsKeptByRotation, withRotationInterval, type Clock, type KeyEntry } from './keys.js';
import { createFileLocks } from './store/filelock.js';
import { createEntryMemory, createKeyedQueue, memoryReaders, rotationRefused } from './store/memory.js';

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
  /**
   * How often the folder is re-read for changes made by other processes (fs.watch tells at
   * once where the file system supports it; the re-read covers the rest, e.g. NFS). Default
   * 5000 ms; 0 turns both off (a single process that owns its folder).
   */
  pollIntervalMs?: number;
  /** The most versions one keyId publishes at once; a rotation beyond it is refused (429). Default: no limit. */
  maxVersions?: number;
  /** Generates a new signing key: the bounded queue of jwt-factory/keygen.ts in the factory. Default: generateSigningKey, unbounded. */
  generateKey?: (alg: Algorithm) => Promise<KeyObject>;
}

/** writeFileAtomic's temp names, `.<file>.<12 hex>.tmp`: a crash between write and rename leaves one behind. */
const TEMP_FILE = /^\.(.+)\.json\.[0-9a-f]{12}\.tmp$/;

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
  const pollIntervalMs = options.pollIntervalMs ?? 5000;
  const memory = createEntryMemory();
  const { entries, remember } = memory;
  const queue = createKeyedQueue();
  const fileLocks = createFileLocks(dir);
  const maxVersions = options.maxVersions ?? Number.POSITIVE_INFINITY;
  const generateKey = options.generateKey ?? generateSigningKey;
  let loaded = false;
  let watcher: FSWatcher | undefined;
  let poller: NodeJS.Timeout | undefined;

  const jsonPath = (keyId: string) => path.join(dir, `${keyId}.json`);
  const pemPath = (keyId: string) => path.join(dir, `${keyId}-private.pem`);

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

  /**
   * Runs `task` after every earlier task on the same keyId in this process, and holding the
   * keyId's lock file against every other process on the folder (WORKERS, replicas on a shared
   * volume): a create or rotation reads the file, decides and writes with no one in between.
   */
  const withLock = <T>(keyId: string, task: () => Promise<T>): Promise<T> => queue(keyId, () => fileLocks.withLock(keyId, task));

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
   * 0.24 ms measured), which is most of the start-up time with 10,000 keys.
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
      // Our own write needs no re-read when the watcher reports it.
      const stamp = await fileStamp(entry.keyId);
      if (stamp !== undefined) stamps.set(entry.keyId, stamp);
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

  /**
   * Removes the temp files a crash left between write and rename. A temp file of a keyId whose
   * lock is free belongs to no writer (every write happens under the keyId's lock), so it is a
   * leftover; one whose lock is held is someone's write in progress and stays.
   */
  async function removeLeftovers(names: readonly string[]): Promise<number> {
    const byKeyId = new Map<string, string[]>();
    for (const name of names) {
      const keyId = TEMP_FILE.exec(name)?.[1];
      if (keyId !== undefined) byKeyId.set(keyId, [...(byKeyId.get(keyId) ?? []), name]);
    }
    let removed = 0;
    for (const [keyId, temps] of byKeyId) {
      const release = await fileLocks.tryAcquire(keyId).catch(() => undefined);
      if (!release) continue;
      try {
        for (const name of temps) {
          await rm(path.join(dir, name), { force: true });
          removed += 1;
        }
      } finally {
        await release();
      }
    }
    if (removed > 0) logger.warn({ removed }, 'removed temp files left by a crash');
    return removed;
  }

  /** Re-reads the keyIds other processes created or changed (a stat each when nothing moved) and clears crash leftovers. */
  async function rescan(): Promise<void> {
    const names = await readdir(dir);
    for (const name of names) {
      const keyId = keyIdOfFile(name);
      if (keyId !== undefined && KEY_ID_PATTERN.test(keyId)) await store.reload(keyId);
    }
    await removeLeftovers(names);
  }

  /** Follows the folder: fs.watch names the file that changed; the periodic rescan covers file systems without events. */
  function follow(): void {
    if (pollIntervalMs <= 0) return;
    try {
      watcher = watch(dir, { persistent: false }, (_event, name) => {
        const keyId = name ? keyIdOfFile(String(name)) : undefined;
        if (keyId !== undefined && KEY_ID_PATTERN.test(keyId)) void store.reload(keyId);
      });
      watcher.on('error', () => {
        watcher?.close();
        watcher = undefined;
      });
    } catch {
      /* no file events here: the rescan alone keeps up */
    }
    poller = setInterval(() => {
      rescan().catch((err: Error) => logger.warn({ reason: err.message }, 'key folder re-read failed'));
    }, pollIntervalMs);
    poller.unref();
  }

  const store: KeyStore = {
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
            // What the rescan compares against: an unchanged file is never parsed again.
            const stamp = await fileStamp(keyId);
            if (stamp !== undefined) stamps.set(keyId, stamp);
          } catch (err) {
            const file = names.includes(`${keyId}.json`) ? `${keyId}.json` : `${keyId}-private.pem`;
            skipped.push(file);
            logger.warn({ file, reason: (err as Error).message }, 'skipped unreadable key file');
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(LOAD_CONCURRENCY, ids.length) }, reader));
      skipped.sort();
      await removeLeftovers(names);
      loaded = true;
      memory.bump();
      follow();
      logger.info({ keys: entries.size, skipped: skipped.length }, 'keys loaded');
      return { loaded: entries.size, skipped };
    },

    isLoaded: () => loaded,
    ...memoryReaders(memory),

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
      return queue(keyId, async () => {
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
        // Generated before the lock is taken: a generation may wait in the bounded queue, and
        // the lock file must only ever be held for a read and a write.
        const version = await toVersion(await generateKey(chosen), chosen, { createdAt: clock() });
        const entry: KeyEntry = Object.freeze({ keyId, alg: chosen, current: version, previous: Object.freeze([]) });
        return fileLocks.withLock(keyId, async () => {
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
      });
    },

    /**
     * Rotates keyId: a new key of the same algorithm is published now and signs from now +
     * `publishAheadSeconds` (default 0: at once); the keys signing until then keep verifying
     * and stay published until that moment + retireAfterSeconds. Undefined for an unknown keyId.
     */
    rotate(keyId: string, publishAheadSeconds = 0): Promise<KeyEntry | undefined> {
      // A rotation applies over the versions this process held when the request arrived: if the
      // file moved meanwhile (another request, here or in another process, rotated it), that
      // rotation won and this request answers its kid instead of rotating a second time.
      const heldAtArrival = entries.get(keyId);
      return queue(keyId, async () => {
        // Read the disk first: another process may have rotated since we cached the entry.
        const seen = (await tryReadFromDisk(keyId)) ?? entries.get(keyId);
        if (!seen) return undefined;
        if (heldAtArrival && fingerprint(heldAtArrival) !== fingerprint(seen)) return remember(seen, 'reload');
        const now = clock();
        const activateAt = publishAheadSeconds > 0 ? new Date(now.getTime() + publishAheadSeconds * 1000) : undefined;
        // Whatever may sign until the new key takes over must verify a full token lifetime after that.
        const retireAt = new Date((activateAt ?? now).getTime() + options.retireAfterSeconds * 1000);
        const room = versionsKeptByRotation(seen, now, activateAt ?? now, maxVersions);
        if ('refused' in room) throw rotationRefused(keyId, room.refused, now, maxVersions);
        // Generated outside the lock (see getOrCreate); the lock covers the check and the write.
        const version = await toVersion(await generateKey(seen.alg), seen.alg, { createdAt: now, activateAt });
        return fileLocks.withLock(keyId, async () => {
          const before = (await tryReadFromDisk(keyId)) ?? entries.get(keyId);
          if (!before) return undefined;
          // Someone rotated while we generated: theirs won, and we answer it.
          if (fingerprint(before) !== fingerprint(seen)) return remember(before, 'reload');
          const kept = room.kept.map((v) => (v.retireAt === undefined ? Object.freeze({ ...v, retireAt }) : v));
          const entry = withRotationInterval(Object.freeze({ keyId, alg: before.alg, current: version, previous: Object.freeze(kept) }), before.rotationInterval);
          await persist(entry, 'replace');
          remember(entry, 'local');
          logger.info({ keyId, kid: version.kid, activateAt: activateAt?.toISOString(), retiredKid: before.current.kid, retireAt: retireAt.toISOString() }, 'key rotated');
          return entry;
        });
      });
    },

    async reseal() {
      const { sealer } = options;
      if (!sealer) throw new Error('re-encrypting needs KEY_ENCRYPTION_KEY');
      let versions = 0;
      let resealed = 0;
      for (const keyId of [...entries.keys()]) {
        await withLock(keyId, async () => {
          const text = await readIfExists(jsonPath(keyId));
          const stored = text === undefined ? [] : ((JSON.parse(text) as { versions?: Array<{ sealed?: string }> }).versions ?? []);
          const stale = stored.filter((v) => v.sealed === undefined || sealer.refOf(v.sealed) !== sealer.keyRef).length;
          versions += Math.max(stored.length, 1);
          // A PEM-only key (the original sample's format) has no JSON yet: writing it seals it too.
          if (text !== undefined && stale === 0) return;
          const entry = await readFromDisk(keyId);
          if (!entry) return;
          await persist(entry, 'replace');
          resealed += text === undefined ? 1 : stale;
        });
      }
      // Files no given key opens were skipped at load (and logged by name there).
      return { versions, resealed, unreadable: 0 };
    },

    /** Sets keyId's own rotation interval (undefined: back to the factory's); undefined for an unknown keyId. */
    setRotationInterval(keyId: string, seconds: number | undefined): Promise<KeyEntry | undefined> {
      return withLock(keyId, async () => {
        const before = (await tryReadFromDisk(keyId)) ?? entries.get(keyId);
        if (!before) return undefined;
        const entry = withRotationInterval(before, seconds);
        await persist(entry, 'replace');
        return remember(entry, 'local');
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
        ids.push(keyId);
        // A create or rotation in progress writes the file itself: waiting behind its key generation would stall the dump.
        if (queue.busy(keyId)) continue;
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
      }
      return ids.sort();
    },

    health: () => ({ ready: loaded, missing: loaded ? [] : ['keys not loaded'] }),

    /** Stops following the folder (every write completed before it was answered). */
    async close() {
      watcher?.close();
      if (poller) clearInterval(poller);
    },
  };
  return store;
}
