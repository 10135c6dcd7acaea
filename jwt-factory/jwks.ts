import { createHash } from 'node:crypto';
import type { JWK } from 'jose';
import { activeVersions, type Clock, type KeyEntry, type KeyStore } from './keystore.js';

/** A serialized JWKS with its strong ETag. */
export interface JwksDocument {
  body: string;
  etag: string;
}

/** The JWKS of some entries at `now`: each active asymmetric version's allow-listed public JWK. */
export function buildJwks(entries: readonly KeyEntry[], now: Date): JwksDocument {
  const keys: JWK[] = [];
  for (const entry of entries) {
    for (const version of activeVersions(entry, now)) {
      // HS256 versions have no publicJwk: a symmetric secret is never published.
      if (version.publicJwk) keys.push(version.publicJwk);
    }
  }
  const body = JSON.stringify({ keys });
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url')}"` };
}

/**
 * Serves JWKS documents built once per change: a document is rebuilt only when the store's
 * revision moves or a rotated-out key retires (the set of active kids changes).
 */
export function createJwksCache(keystore: KeyStore, clock: Clock) {
  const cache = new Map<string, { signature: string; doc: JwksDocument }>();

  const fetch = (cacheKey: string, entries: readonly KeyEntry[]): JwksDocument => {
    const now = clock();
    const signature = `${keystore.revision()}|${entries.map((e) => activeVersions(e, now).length).join(',')}`;
    const hit = cache.get(cacheKey);
    if (hit && hit.signature === signature) return hit.doc;
    const doc = buildJwks(entries, now);
    cache.set(cacheKey, { signature, doc });
    return doc;
  };

  return {
    /** Every keyId's public keys (`/.well-known/jwks.json`). */
    all: (): JwksDocument => fetch('*', keystore.entries()),
    /** One keyId's public keys (`/keys/:keyId/jwks.json`). */
    forEntry: (entry: KeyEntry): JwksDocument => fetch(`key:${entry.keyId}`, [entry]),
  };
}
