import {
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  generateKeyPair as generateNodeKeyPair,
  randomBytes,
  type KeyObject,
  type JsonWebKey,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import { calculateJwkThumbprint, base64url, type JWK } from 'jose';
import { AppError } from '../lib/errors.js';
import { KEY_ID_PATTERN } from '../lib/keyid.js';
import type { Logger } from '../lib/logger.js';
import type { VerificationKey } from '../lib/jwt.js';
import { ALGORITHMS, type Algorithm } from './config.js';
import { writeFileAtomic } from '../lib/files.js';

const generateKeyPairAsync = promisify(generateNodeKeyPair);

/** Errors of a key folder that cannot take a new file: read-only mount, permissions, full disk. */
const NOT_WRITABLE: ReadonlySet<string> = new Set(['EROFS', 'EACCES', 'EPERM', 'ENOSPC', 'EDQUOT']);

/** The clock every time-dependent decision reads (injected so tests can stand at exact instants). */
export type Clock = () => Date;

/** One generation of a keyId's key: the current signer, or a rotated-out key kept until it retires. */
export interface KeyVersion {
  readonly kid: string;
  readonly alg: Algorithm;
  /** Private key (asymmetric) or the HMAC secret (HS256). Never leaves the factory. */
  readonly signingKey: KeyObject;
  /** The key verification uses: the public key, or the secret for HS256. */
  readonly verifyKey: KeyObject;
  /** Public members only (allow-listed), with kid, alg and use; undefined for HS256. */
  readonly publicJwk: Readonly<JWK> | undefined;
  /** The public key as SPKI PEM; undefined for HS256. */
  readonly publicPem: string | undefined;
  readonly createdAt: Date;
  /** When a key published ahead of time starts signing; undefined: signs from creation. */
  readonly activateAt: Date | undefined;
  /** When a rotated-out key stops verifying and leaves the JWKS. */
  readonly retireAt: Date | undefined;
}

/** Everything the factory knows about one keyId. */
export interface KeyEntry {
  readonly keyId: string;
  readonly alg: Algorithm;
  /** The newest version: it signs unless it was published ahead and its activateAt is still to come (see signingVersion). */
  readonly current: KeyVersion;
  /** Older versions, newest first (possibly already retired: filter with `activeVersions`). */
  readonly previous: readonly KeyVersion[];
}

/** Why the store changed: `local` when this process made the change (a worker then tells its peers). */
export type ChangeListener = (keyId: string, origin: 'local' | 'reload') => void;

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
}

/** The public JWK members we publish, per key type (RFC 7517/7518/8037); never d, p, q, dp, dq, qi, k. */
const PUBLIC_MEMBERS: Record<string, readonly string[]> = {
  RSA: ['kty', 'n', 'e'],
  EC: ['kty', 'crv', 'x', 'y'],
  OKP: ['kty', 'crv', 'x'],
};

const FILE_FORMAT = 'jwt-factory-key/1';

/** Keys loaded at once at start-up: enough to keep the thread pool busy with their kid checks. */
const LOAD_CONCURRENCY = 32;

/** What a key file holds: the keyId and its versions (current first), each as a private JWK. */
interface StoredKeyFile {
  format: typeof FILE_FORMAT;
  keyId: string;
  alg: Algorithm;
  versions: Array<{ kid: string; alg: Algorithm; createdAt: string; activateAt?: string; retireAt?: string; jwk: JsonWebKey }>;
}

/** Picks the allow-listed public members of a JWK. */
function publicMembers(jwk: JsonWebKey): Record<string, string> {
  const members = PUBLIC_MEMBERS[String(jwk.kty)];
  if (!members) throw new Error(`unsupported key type ${String(jwk.kty)}`);
  const out: Record<string, string> = {};
  for (const m of members) {
    const value = (jwk as Record<string, unknown>)[m];
    if (typeof value !== 'string') throw new Error(`public key misses ${m}`);
    out[m] = value;
  }
  return out;
}

const isAlgorithm = (value: unknown): value is Algorithm => typeof value === 'string' && (ALGORITHMS as readonly string[]).includes(value);

/** Generates a fresh signing key for `alg`, in the libuv thread pool (never blocks the event loop). */
async function generateSigningKey(alg: Algorithm): Promise<KeyObject> {
  switch (alg) {
    case 'RS256':
    case 'RS384':
    case 'RS512':
    case 'PS256':
      return (await generateKeyPairAsync('rsa', { modulusLength: 2048, publicExponent: 0x10001 })).privateKey;
    case 'ES256':
      return (await generateKeyPairAsync('ec', { namedCurve: 'P-256' })).privateKey;
    case 'ES384':
      return (await generateKeyPairAsync('ec', { namedCurve: 'P-384' })).privateKey;
    case 'EdDSA':
      return (await generateKeyPairAsync('ed25519')).privateKey;
    case 'HS256':
      // RFC 7518 §3.2: an HS256 key must be at least 256 bits.
      return createSecretKey(randomBytes(32));
  }
}

/**
 * Builds a version from its signing key. The kid is the RFC 7638 thumbprint of the public key;
 * for HS256 a thumbprint would be a hash of the secret (an offline guessing oracle), so its
 * kid is a random 128-bit value generated once and persisted.
 */
async function toVersion(
  signingKey: KeyObject,
  alg: Algorithm,
  meta: { kid?: string; createdAt: Date; activateAt?: Date; retireAt?: Date },
): Promise<KeyVersion> {
  if (alg === 'HS256') {
    if (signingKey.type !== 'secret') throw new Error('HS256 needs a secret key');
    const kid = meta.kid ?? base64url.encode(randomBytes(16));
    return Object.freeze({ kid, alg, signingKey, verifyKey: signingKey, publicJwk: undefined, publicPem: undefined, createdAt: meta.createdAt, activateAt: meta.activateAt, retireAt: meta.retireAt });
  }
  if (signingKey.type !== 'private') throw new Error(`${alg} needs a private key`);
  const publicKey = createPublicKey(signingKey);
  const members = publicMembers(publicKey.export({ format: 'jwk' }));
  assertKeyFitsAlg(members, alg);
  const kid = await calculateJwkThumbprint(members as JWK, 'sha256');
  const publicJwk = Object.freeze({ ...members, kid, alg, use: 'sig' }) as JWK;
  const publicPem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
  return Object.freeze({ kid, alg, signingKey, verifyKey: publicKey, publicJwk, publicPem, createdAt: meta.createdAt, activateAt: meta.activateAt, retireAt: meta.retireAt });
}

/** Refuses a stored key whose type does not match its algorithm (a tampered or mislabelled file). */
function assertKeyFitsAlg(jwk: Record<string, string>, alg: Algorithm): void {
  const expected: Record<Algorithm, string> = {
    RS256: 'RSA', RS384: 'RSA', RS512: 'RSA', PS256: 'RSA', ES256: 'EC:P-256', ES384: 'EC:P-384', EdDSA: 'OKP:Ed25519', HS256: 'oct',
  };
  const actual = jwk.kty === 'RSA' ? 'RSA' : `${jwk.kty}:${jwk.crv}`;
  if (actual !== expected[alg]) throw new Error(`key type ${actual} does not fit ${alg}`);
}

/** Imports a stored private JWK (or oct secret) as a KeyObject. */
function importStoredJwk(jwk: JsonWebKey): KeyObject {
  if (jwk.kty === 'oct') {
    if (typeof jwk.k !== 'string') throw new Error('secret key misses k');
    return createSecretKey(Buffer.from(jwk.k, 'base64url'));
  }
  return createPrivateKey({ key: jwk, format: 'jwk' });
}

/** Parses a key file's text into an entry; throws on anything malformed. */
async function parseKeyFile(text: string, keyId: string): Promise<KeyEntry> {
  let data: Partial<StoredKeyFile>;
  try {
    data = JSON.parse(text) as Partial<StoredKeyFile>;
  } catch {
    // JSON.parse quotes the text it failed on, and this text holds private keys: never pass it on.
    throw new Error('not valid JSON');
  }
  if (data.format !== FILE_FORMAT || data.keyId !== keyId || !isAlgorithm(data.alg) || !Array.isArray(data.versions) || data.versions.length === 0) {
    throw new Error('not a jwt-factory key file');
  }
  const versions: KeyVersion[] = [];
  for (const v of data.versions) {
    if (!isAlgorithm(v.alg) || v.alg !== data.alg) throw new Error('version algorithm differs from the key algorithm');
    const createdAt = new Date(v.createdAt);
    const activateAt = v.activateAt === undefined ? undefined : new Date(v.activateAt);
    const retireAt = v.retireAt === undefined ? undefined : new Date(v.retireAt);
    if ([createdAt, activateAt, retireAt].some((d) => d !== undefined && Number.isNaN(d.getTime()))) throw new Error('bad date');
    const version = await toVersion(importStoredJwk(v.jwk), v.alg, { kid: v.alg === 'HS256' ? v.kid : undefined, createdAt, activateAt, retireAt });
    if (version.kid !== v.kid) throw new Error('stored kid does not match the key');
    versions.push(version);
  }
  const [current, ...previous] = versions;
  return Object.freeze({ keyId, alg: data.alg, current: current!, previous: Object.freeze(previous) });
}

/** Serializes an entry (private material included: the file is written with mode 0600). */
function serializeEntry(entry: KeyEntry): string {
  const file: StoredKeyFile = {
    format: FILE_FORMAT,
    keyId: entry.keyId,
    alg: entry.alg,
    versions: [entry.current, ...entry.previous].map((v) => ({
      kid: v.kid,
      alg: v.alg,
      createdAt: v.createdAt.toISOString(),
      ...(v.activateAt ? { activateAt: v.activateAt.toISOString() } : {}),
      ...(v.retireAt ? { retireAt: v.retireAt.toISOString() } : {}),
      jwk: v.signingKey.export({ format: 'jwk' }),
    })),
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

/** What identifies an entry's state: its versions' kids and retire times. */
const fingerprint = (entry: KeyEntry): string =>
  [entry.current, ...entry.previous].map((v) => `${v.kid}@${v.retireAt?.getTime() ?? ''}`).join(',');

/** True while a version still verifies and is published. */
export const isActive = (version: KeyVersion, now: Date): boolean => version.retireAt === undefined || version.retireAt.getTime() > now.getTime();

/**
 * The version that signs at `now`: the newest one that is active and not waiting for its
 * activateAt. A key published ahead is in the JWKS before it signs, so caches learn it first.
 */
export function signingVersion(entry: KeyEntry, now: Date): KeyVersion {
  const ready = (v: KeyVersion) => isActive(v, now) && (v.activateAt === undefined || v.activateAt.getTime() <= now.getTime());
  return [entry.current, ...entry.previous].find(ready) ?? entry.current;
}

/** The versions of an entry that still verify at `now`: the newest first. */
export function activeVersions(entry: KeyEntry, now: Date): KeyVersion[] {
  return [entry.current, ...entry.previous.filter((v) => isActive(v, now))];
}

/** The keys `verifyJwt` may use for an entry at `now`, each pinned to its algorithm. */
export function verificationKeys(entry: KeyEntry, now: Date): VerificationKey[] {
  return activeVersions(entry, now).map((v) => ({ kid: v.kid, alg: v.alg, key: v.verifyKey }));
}

/** A file's text, or undefined when it does not exist (any other failure throws). */
async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** readIfExists for start-up (see readFilesSync). */
function readIfExistsSync(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The text of a keyId's file: the JSON store, or the original sample's PEM. */
interface KeyFiles {
  json?: string;
  pem?: string;
}

export type KeyStore = ReturnType<typeof createKeyStore>;

/**
 * The factory's key store: per keyId one algorithm and its versions, persisted as
 * `<dir>/<keyId>.json` (mode 0600, atomic writes). Also reads the original sample's
 * `<keyId>-private.pem` files (PKCS#1, RS256). Holds no module-level state.
 */
export function createKeyStore(options: KeyStoreOptions) {
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
    if (files.json !== undefined) return parseKeyFile(files.json, keyId);
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
      await writeFileAtomic(jsonPath(entry.keyId), serializeEntry(entry), { mode: 0o600, noClobber: mode === 'create', dirMode: 0o700 });
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
        if (name.startsWith('.')) continue;
        const match = /^(.+?)(\.json|-private\.pem)$/.exec(name);
        if (!match) continue;
        if (!KEY_ID_PATTERN.test(match[1]!)) {
          skipped.push(name);
          logger.warn({ file: name }, 'skipped key file whose name is not a valid keyId');
          continue;
        }
        keyIds.add(match[1]!);
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

    /** Every entry known to this process, by keyId (a stable order keeps the JWKS ETag equal across workers). */
    entries: (): KeyEntry[] => [...entries.values()].sort((a, b) => (a.keyId < b.keyId ? -1 : 1)),

    /** The entry for keyId; on a miss, checks the disk (another worker may have created it). */
    async get(keyId: string): Promise<KeyEntry | undefined> {
      const known = entries.get(keyId);
      if (known) return known;
      const fromDisk = await tryReadFromDisk(keyId);
      if (fromDisk) {
        entries.set(keyId, fromDisk);
        changed(keyId, 'reload');
      }
      return fromDisk;
    },

    /** Re-reads one keyId from disk (another worker changed it); an unchanged file changes nothing. */
    async reload(keyId: string): Promise<KeyEntry | undefined> {
      const fromDisk = await tryReadFromDisk(keyId);
      const known = entries.get(keyId);
      // Tokens with made-up kids trigger reloads: keep caches (JWKS) warm unless the versions moved.
      if (fromDisk && (!known || fingerprint(known) !== fingerprint(fromDisk))) {
        entries.set(keyId, fromDisk);
        changed(keyId, 'reload');
        return fromDisk;
      }
      return known ?? fromDisk;
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
        const existing = entries.get(keyId) ?? (await tryReadFromDisk(keyId));
        if (existing) {
          entries.set(keyId, existing);
          return { entry: existing, created: false };
        }
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
          entries.set(keyId, winner);
          changed(keyId, 'reload');
          return { entry: winner, created: false };
        }
        entries.set(keyId, entry);
        logger.info({ keyId, kid: version.kid, alg: chosen }, 'key created');
        changed(keyId, 'local');
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
        entries.set(keyId, entry);
        logger.info({ keyId, kid: version.kid, activateAt: activateAt?.toISOString(), retiredKid: before.current.kid, retireAt: retireAt.toISOString() }, 'key rotated');
        changed(keyId, 'local');
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
            entries.set(keyId, onDisk);
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
  };
}
