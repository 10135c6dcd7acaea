import { createPrivateKey, createPublicKey, createSecretKey, generateKeyPair as generateNodeKeyPair, randomBytes, type JsonWebKey, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { base64url, calculateJwkThumbprint, type JWK } from 'jose';
import { pickPublicMembers } from '../lib/jwk.js';
import type { VerificationKey } from '../lib/jwt.js';
import { ALGORITHMS, type Algorithm } from './config.js';
import type { KeySealer } from './store/encryption.js';

/**
 * Key material and its file format: what one keyId's key is (versions, kid, public JWK), how a
 * key is generated, and how an entry is written to and read from its `<keyId>.json`. Pure
 * functions and types; the store (jwt-factory/keystore.ts) owns files, caching and locking.
 */

const generateKeyPairAsync = promisify(generateNodeKeyPair);

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
  /** This key's own rotation interval in seconds (0: never rotate it); undefined: the factory's ROTATION_INTERVAL. */
  readonly rotationInterval?: number;
}

const FILE_FORMAT = 'jwt-factory-key/1';

/** What a key file holds: the keyId and its versions (current first), each as a private JWK. */
interface StoredKeyFile {
  format: typeof FILE_FORMAT;
  keyId: string;
  alg: Algorithm;
  rotationInterval?: number;
  /** Each version holds its private JWK as `jwk`, or sealed (AES-256-GCM, store/encryption.ts) as `sealed`. */
  versions: Array<{ kid: string; alg: Algorithm; createdAt: string; activateAt?: string; retireAt?: string; jwk?: JsonWebKey; sealed?: string }>;
}

/** The allow-listed public members of a key we generated or loaded. */
function publicMembers(jwk: JsonWebKey): Record<string, string> {
  const picked = pickPublicMembers(jwk as Record<string, unknown>);
  if ('members' in picked) return picked.members;
  throw new Error(picked.problem.kind === 'missing' ? `public key misses ${picked.problem.member}` : `unsupported key type ${picked.problem.kty}`);
}

const isAlgorithm = (value: unknown): value is Algorithm => typeof value === 'string' && (ALGORITHMS as readonly string[]).includes(value);

/** Generates a fresh signing key for `alg`, in the libuv thread pool (never blocks the event loop). */
export async function generateSigningKey(alg: Algorithm): Promise<KeyObject> {
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
export async function toVersion(
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
export function importStoredJwk(jwk: JsonWebKey): KeyObject {
  if (jwk.kty === 'oct') {
    if (typeof jwk.k !== 'string') throw new Error('secret key misses k');
    return createSecretKey(Buffer.from(jwk.k, 'base64url'));
  }
  return createPrivateKey({ key: jwk, format: 'jwk' });
}

/** Parses a key file's text into an entry (opening sealed versions with `sealer`); throws on anything malformed. */
export async function parseKeyFile(text: string, keyId: string, sealer?: KeySealer): Promise<KeyEntry> {
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
    const jwk = storedJwk(v, keyId, sealer);
    const version = await toVersion(importStoredJwk(jwk), v.alg, { kid: v.alg === 'HS256' ? v.kid : undefined, createdAt, activateAt, retireAt });
    if (version.kid !== v.kid) throw new Error('stored kid does not match the key');
    versions.push(version);
  }
  const [current, ...previous] = versions;
  const { rotationInterval } = data;
  if (rotationInterval !== undefined && !(Number.isInteger(rotationInterval) && rotationInterval >= 0)) throw new Error('bad rotationInterval');
  return Object.freeze({ keyId, alg: data.alg, current: current!, previous: Object.freeze(previous), ...(rotationInterval !== undefined ? { rotationInterval } : {}) });
}

/** A stored version's private JWK: plain, or opened with the sealer (keyId and kid are its associated data). */
function storedJwk(v: StoredKeyFile['versions'][number], keyId: string, sealer: KeySealer | undefined): JsonWebKey {
  if (v.sealed !== undefined) {
    if (!sealer) throw new Error('its keys are encrypted: set KEY_ENCRYPTION_KEY (or KEY_ENCRYPTION_KEY_FILE)');
    return sealer.open(v.sealed, keyId, v.kid);
  }
  if (v.jwk === undefined) throw new Error('a version holds no key');
  return v.jwk;
}

/** Serializes an entry, private material included (sealed when a sealer is given; the file is written with mode 0600 either way). */
export function serializeEntry(entry: KeyEntry, sealer?: KeySealer): string {
  const file: StoredKeyFile = {
    format: FILE_FORMAT,
    keyId: entry.keyId,
    alg: entry.alg,
    ...(entry.rotationInterval !== undefined ? { rotationInterval: entry.rotationInterval } : {}),
    versions: [entry.current, ...entry.previous].map((v) => ({
      kid: v.kid,
      alg: v.alg,
      createdAt: v.createdAt.toISOString(),
      ...(v.activateAt ? { activateAt: v.activateAt.toISOString() } : {}),
      ...(v.retireAt ? { retireAt: v.retireAt.toISOString() } : {}),
      ...(sealer ? { sealed: sealer.seal(v.signingKey.export({ format: 'jwk' }), entry.keyId, v.kid) } : { jwk: v.signingKey.export({ format: 'jwk' }) }),
    })),
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

/** What identifies an entry's state: its versions' kids and retire times, and its own rotation interval. */
export const fingerprint = (entry: KeyEntry): string =>
  `${[entry.current, ...entry.previous].map((v) => `${v.kid}@${v.retireAt?.getTime() ?? ''}`).join(',')}|${entry.rotationInterval ?? ''}`;

/** The entry with its own rotation interval set (a number) or removed (undefined: the factory's applies). */
export function withRotationInterval(entry: KeyEntry, seconds: number | undefined): KeyEntry {
  const { rotationInterval: _old, ...rest } = entry;
  return Object.freeze(seconds === undefined ? rest : { ...rest, rotationInterval: seconds });
}

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

/** The instant a version starts signing: its activateAt when published ahead, else its creation. */
const activation = (v: KeyVersion): number => (v.activateAt ?? v.createdAt).getTime();

/**
 * Which versions a rotation at `now` keeps published beside the new one (which signs from
 * `newActivation`), with at most `maxVersions` published in total. Versions past their
 * retireAt are gone already. At the cap, a version goes first only when no token it signed
 * can still be valid: one published ahead whose activation a newer version precedes never
 * signs at all. A rotated-out version that did sign verifies until its retireAt (its last
 * signing instant + MAX_TOKEN_TTL + clock tolerance); unpublishing it earlier would fail live
 * tokens, so the rotation is refused with that version and the instant it frees its place.
 */
export function versionsKeptByRotation(
  entry: KeyEntry,
  now: Date,
  newActivation: Date,
  maxVersions: number,
): { kept: KeyVersion[] } | { refused: { oldest: KeyVersion; freeAt: Date } } {
  const kept = [entry.current, ...entry.previous].filter((v) => isActive(v, now));
  // Oldest first: drop the never-signing ones until the new version fits.
  for (let i = kept.length - 1; i >= 0 && kept.length + 1 > maxVersions; i -= 1) {
    const v = kept[i]!;
    const preceded = v.activateAt !== undefined && [newActivation.getTime(), ...kept.slice(0, i).map(activation)].some((t) => t <= v.activateAt!.getTime());
    if (preceded) kept.splice(i, 1);
  }
  if (kept.length + 1 <= maxVersions) return { kept };
  const oldest = kept[kept.length - 1]!;
  return { refused: { oldest, freeAt: oldest.retireAt ?? now } };
}
