import { decodeJwt } from 'jose';
import { epochSeconds } from '../lib/jwt.js';

/**
 * servicea's cache of the tokens it presents: one per key (issuer key + audience), reused
 * until shortly before its `exp`, as OAuth clients keep an access token until it expires
 * (RFC 6749 §5.1 `expires_in`) instead of asking for one per call. One mint in flight per
 * key: callers that miss together wait for the same answer. A token is never handed out at
 * or after `exp - refreshAhead`, so the receiver never gets one that expires on the way.
 */

/** A token as minted, with the id servicea may log (never the token itself). */
export interface MintedToken {
  token: string;
  jti?: string;
}

export interface TokenCache {
  /** The cached token for `key` while fresh, else the one `mint` resolves with (single flight per key). */
  get(key: string, mint: () => Promise<MintedToken>): Promise<MintedToken>;
}

export interface TokenCacheOptions {
  now: () => Date;
  /**
   * Seconds before `exp` at which a token stops being handed out (default 60, Envoy's clock
   * skew: a token refreshed this early is still valid at a receiver whose clock runs ahead).
   * A token living less than twice this is refreshed at half its lifetime instead.
   */
  refreshAheadSeconds?: number;
}

interface Entry extends MintedToken {
  /** Epoch seconds from which the token is no longer handed out. */
  refreshAt: number;
}

/** When a token must be replaced: `exp - refreshAhead`, or half-life for short tokens; undefined when it has no usable `exp`. */
export function refreshInstant(token: string, refreshAheadSeconds: number): number | undefined {
  let claims;
  try {
    claims = decodeJwt(token);
  } catch {
    return undefined;
  }
  const { exp, iat } = claims;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return undefined;
  const lifetime = typeof iat === 'number' && iat < exp ? exp - iat : Number.POSITIVE_INFINITY;
  return exp - Math.min(refreshAheadSeconds, lifetime / 2);
}

/** Creates an empty cache. Keys come from a fixed set (issuer key x receiver), so it needs no eviction. */
export function createTokenCache(options: TokenCacheOptions): TokenCache {
  const ahead = options.refreshAheadSeconds ?? 60;
  const entries = new Map<string, Entry>();
  const inFlight = new Map<string, Promise<MintedToken>>();
  return {
    get(key, mint) {
      const entry = entries.get(key);
      if (entry && epochSeconds(options.now()) < entry.refreshAt) return Promise.resolve({ token: entry.token, ...(entry.jti ? { jti: entry.jti } : {}) });
      const pending = inFlight.get(key);
      if (pending) return pending;
      const next = mint()
        .then((minted) => {
          const refreshAt = refreshInstant(minted.token, ahead);
          // A token without exp, or one already inside its refresh window, is used once and not kept.
          if (refreshAt !== undefined && epochSeconds(options.now()) < refreshAt) entries.set(key, { ...minted, refreshAt });
          else entries.delete(key);
          return minted;
        })
        .finally(() => inFlight.delete(key));
      inFlight.set(key, next);
      return next;
    },
  };
}
