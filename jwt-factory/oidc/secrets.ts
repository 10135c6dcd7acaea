import { createHash, randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Client secrets and user passwords: kept as given (the demo file) or as a self-describing
 * scrypt hash `scrypt$N$r$p$salt$hash` (salt and hash base64url). Every comparison is constant
 * time over equal-length digests, so neither the length nor a prefix of a secret leaks.
 */

const scrypt = (password: string, salt: Buffer, keylen: number, options: ScryptOptions) =>
  new Promise<Buffer>((resolve, reject) => {
    scryptCallback(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)));
  });

/** RFC 7914 §2 parameters: N = 2^14, r = 8, p = 1 is the interactive-login cost scrypt's authors suggest. */
const DEFAULT_COST = { N: 16_384, r: 8, p: 1 };
const HASH_PATTERN = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9_-]{16,})\$([A-Za-z0-9_-]{43,})$/;
/** Bounds what a configured hash may ask for, so a typo cannot turn every login into a memory bomb. */
const MAX_N = 1 << 20;

/** A secret as configured: the plain text or a parsed scrypt hash. */
export type StoredSecret = { kind: 'plain'; digest: Buffer } | { kind: 'scrypt'; N: number; r: number; p: number; salt: Buffer; hash: Buffer };

const sha256 = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/** Why a `*_hash` value is not a usable scrypt hash; undefined when it is. */
export function hashProblem(value: string): string | undefined {
  const m = HASH_PATTERN.exec(value);
  if (!m) return 'must look like scrypt$N$r$p$salt$hash (npm run jwt-factory -- hash-password)';
  const N = Number(m[1]);
  if (N < 2 || N > MAX_N || (N & (N - 1)) !== 0) return `N must be a power of two between 2 and ${MAX_N}`;
  if (Number(m[2]) < 1 || Number(m[3]) < 1 || Number(m[2]) * Number(m[3]) > 64) return 'r and p must be positive and r*p at most 64';
  return undefined;
}

/** Parses a configured secret: `hashed` when it came from a `*_hash` field (already checked by hashProblem). */
export function storedSecret(value: string, hashed: boolean): StoredSecret {
  if (!hashed) return { kind: 'plain', digest: sha256(value) };
  const m = HASH_PATTERN.exec(value)!;
  return { kind: 'scrypt', N: Number(m[1]), r: Number(m[2]), p: Number(m[3]), salt: Buffer.from(m[4]!, 'base64url'), hash: Buffer.from(m[5]!, 'base64url') };
}

/** True when `candidate` matches the stored secret (constant time). */
export async function secretMatches(stored: StoredSecret, candidate: string): Promise<boolean> {
  if (stored.kind === 'plain') return timingSafeEqual(stored.digest, sha256(candidate));
  const derived = await scrypt(candidate, stored.salt, stored.hash.length, { N: stored.N, r: stored.r, p: stored.p, maxmem: 256 * stored.N * stored.r + 1024 * 1024 });
  return timingSafeEqual(derived, stored.hash);
}

/** Hashes a password or client secret into the `scrypt$N$r$p$salt$hash` form the config accepts. */
export async function hashSecret(secret: string, cost = DEFAULT_COST): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(secret, salt, 32, { ...cost, maxmem: 256 * cost.N * cost.r + 1024 * 1024 });
  return `scrypt$${cost.N}$${cost.r}$${cost.p}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

/** A stored secret no input matches, checked when a username is unknown so the answer takes as long as for a known one. */
export function decoySecret(): StoredSecret {
  return { kind: 'scrypt', ...DEFAULT_COST, salt: randomBytes(16), hash: randomBytes(32) };
}

/** Constant-time equality of two strings of any length (compared as SHA-256 digests). */
export const constantTimeEqual = (a: string, b: string): boolean => timingSafeEqual(sha256(a), sha256(b));
