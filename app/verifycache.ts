import { createHash } from 'node:crypto';
import { epochSeconds } from '../lib/jwt.js';

/**
 * A receiver's memory of tokens it has already verified successfully, as Envoy's jwt_authn
 * keeps one (source/extensions/filters/http/jwt_authn/jwt_cache.cc): a bounded LRU, only
 * tokens up to 4 KiB, and a hit is re-checked against the clock on every lookup, with the
 * same tolerance as a fresh verification (jwt_verify_lib `Jwt::verifyTimeConstraint(now,
 * clock_skew)`), so a cached answer is never "valid" where verifying again would refuse.
 * Keys are SHA-256 digests of the token: the cache never holds a bearer token itself.
 * Only successes are kept; a refusal is always computed afresh.
 */

/** Envoy's `jwt_cache_config.jwt_cache_size` default. */
export const DEFAULT_VERIFY_CACHE_SIZE = 100;
/** Envoy's `kMaxJwtSizeForCache`: larger tokens are verified every time. */
export const MAX_CACHED_TOKEN_BYTES = 4096;

export interface VerifyCache {
  /** The claims of an earlier successful verification of `token`, if still within exp / nbf at `now`. */
  lookup(token: string, now: Date, clockToleranceSeconds: number): Record<string, unknown> | undefined;
  /** Remembers a successful verification (dropped when the cache is off or the token is too large). */
  insert(token: string, claims: Record<string, unknown>): void;
  /** Entries held (for tests and logs). */
  readonly size: number;
}

const digest = (token: string) => createHash('sha256').update(token).digest('base64url');

/**
 * Whether claims verified earlier still pass the time checks at `now`. The same arithmetic as
 * jose's `jwtVerify` (lib/jwt_claims_set.ts): expired when `exp <= now - tolerance`, not yet
 * valid when `nbf > now + tolerance`, with `now` in whole epoch seconds.
 */
export function stillWithinTime(claims: Record<string, unknown>, now: Date, clockToleranceSeconds: number): boolean {
  const t = epochSeconds(now);
  const { exp, nbf } = claims;
  if (typeof exp !== 'number' || exp <= t - clockToleranceSeconds) return false;
  return !(typeof nbf === 'number' && nbf > t + clockToleranceSeconds);
}

/** Creates a cache of at most `maxEntries` verified tokens (0: off, every token verified). */
export function createVerifyCache(maxEntries = DEFAULT_VERIFY_CACHE_SIZE): VerifyCache {
  // A Map keeps insertion order: re-inserting on a hit makes the first key the least recently used.
  const entries = new Map<string, Record<string, unknown>>();
  return {
    lookup(token, now, clockToleranceSeconds) {
      if (maxEntries === 0 || token.length > MAX_CACHED_TOKEN_BYTES) return undefined;
      const key = digest(token);
      const claims = entries.get(key);
      if (!claims) return undefined;
      entries.delete(key);
      if (!stillWithinTime(claims, now, clockToleranceSeconds)) return undefined;
      entries.set(key, claims);
      return claims;
    },
    insert(token, claims) {
      if (maxEntries === 0 || token.length > MAX_CACHED_TOKEN_BYTES) return;
      const key = digest(token);
      entries.delete(key);
      entries.set(key, claims);
      while (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
    },
    get size() {
      return entries.size;
    },
  };
}
