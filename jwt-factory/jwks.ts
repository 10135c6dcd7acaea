import { createHash } from 'node:crypto';
import type { JWK } from 'jose';
import { activeVersions, type Clock, type KeyEntry } from './keys.js';
import type { KeyStore } from './keystore.js';
import { nextScheduledChange, type RotationPolicy } from './rotation.js';

/** A serialized JWKS with its strong ETag. */
export interface JwksDocument {
  body: string;
  etag: string;
  /** When the document is next due to change by schedule (epoch ms; Infinity when nothing is scheduled). */
  changesAt: number;
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
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url')}"`, changesAt: nextRetirement(entries, now) };
}

/** The first instant after `now` at which a published version retires (Infinity when none will). */
function nextRetirement(entries: readonly KeyEntry[], now: Date): number {
  let next = Number.POSITIVE_INFINITY;
  for (const entry of entries) {
    for (const version of activeVersions(entry, now)) {
      const at = version.retireAt?.getTime();
      if (at !== undefined && at < next) next = at;
    }
  }
  return next;
}

/**
 * Serves JWKS documents built once per change: a document is rebuilt only when the store's
 * revision moves or a rotated-out key retires (the set of active kids changes). A hit costs
 * two comparisons, whatever the number of keys: the entries are not even listed.
 */
export function createJwksCache(keystore: KeyStore, clock: Clock, rotation: RotationPolicy = { interval: 0, publishAhead: 0 }) {
  const cache = new Map<string, { revision: number; validUntil: number; doc: JwksDocument }>();

  const fetch = (cacheKey: string, entries: () => readonly KeyEntry[]): JwksDocument => {
    const now = clock();
    const revision = keystore.revision();
    const hit = cache.get(cacheKey);
    if (hit && hit.revision === revision && now.getTime() < hit.validUntil) return hit.doc;
    const list = entries();
    const built = buildJwks(list, now);
    // A scheduled rotation changes the store (and its revision) when it happens: it only bounds max-age.
    const doc = { ...built, changesAt: Math.min(built.changesAt, nextScheduledChange(list, rotation)) };
    cache.set(cacheKey, { revision, validUntil: built.changesAt, doc });
    return doc;
  };

  return {
    /** Every keyId's public keys (`/.well-known/jwks.json`). */
    all: (): JwksDocument => fetch('*', keystore.entries),
    /** One keyId's public keys (`/keys/:keyId/jwks.json`). */
    forEntry: (entry: KeyEntry): JwksDocument => fetch(`key:${entry.keyId}`, () => [entry]),
    /** Some keyIds' public keys together (`/keys/a,b/jwks.json`). */
    forEntries: (entries: readonly KeyEntry[]): JwksDocument => fetch(`key:${entries.map((e) => e.keyId).join(',')}`, () => entries),
  };
}
