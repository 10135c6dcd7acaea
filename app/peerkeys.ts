import path from 'node:path';
import { z } from 'zod';
import type { JWK } from 'jose';
import { readIfExists } from '../lib/files.js';
import { TokenError, verificationKeyFromJwk, type VerificationKey } from '../lib/jwt.js';
import { dependencyError, parseAnswer, type HttpClient } from '../lib/httpclient.js';

/**
 * Where a receiver (serviceb, servicec) finds servicea's public keys for scenarios 3 and 4:
 * servicea's published JWKS (`<SERVICEA_URL>/.well-known/jwks.json`) or `jwks.json` in a shared
 * folder. Keys are cached; a token whose kid is unknown triggers one reload, at most once per
 * `minReloadMs`, so random kids cannot make us hammer servicea.
 */

/** Algorithms a peer key may be pinned to; anything else in the JWKS is skipped. */
const ALLOWED_ALGS = new Set(['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA']);

const jwksSchema = z.object({
  keys: z.array(z.object({ kty: z.string(), kid: z.string().min(1), alg: z.string().optional(), use: z.string().optional() }).passthrough()),
});

export interface PeerKeys {
  /** The cached keys; with `reload`, fetch again first unless a reload happened very recently. */
  keys(options?: { reload?: boolean }): Promise<VerificationKey[]>;
}

export interface PeerKeysOptions {
  source: 'jwks' | 'dir';
  /** Who serves the JWKS, named in errors: servicea (default), or jwt-factory for user tokens. */
  dependency?: string;
  /** For `jwks`: servicea's base URL. */
  jwksBaseUrl: string;
  /** For `dir`: the shared folder holding `jwks.json`. */
  dir: string;
  client: HttpClient;
  now: () => Date;
  minReloadMs?: number;
}

/**
 * Imports the signing keys of a JWKS, each pinned to its declared alg. Only asymmetric
 * algorithms: a symmetric key in a published JWKS could be used by any reader to sign.
 * A key that carries a private member is a leak, not a key to trust, and is skipped too.
 */
async function importJwks(jwks: z.infer<typeof jwksSchema>): Promise<VerificationKey[]> {
  const out: VerificationKey[] = [];
  for (const jwk of jwks.keys) {
    if (jwk.alg === undefined || !ALLOWED_ALGS.has(jwk.alg) || 'd' in jwk || 'k' in jwk) continue;
    try {
      out.push(await verificationKeyFromJwk(jwk as JWK));
    } catch (err) {
      // One unusable key (wrong use, alg not fitting the key type) must not hide the others.
      if (!(err instanceof TokenError)) throw err;
    }
  }
  return out;
}

/** Creates the peer key source for one receiver (state lives in the returned object only). */
export function createPeerKeys(options: PeerKeysOptions): PeerKeys {
  const minReloadMs = options.minReloadMs ?? 5000;
  let cached: { keys: VerificationKey[]; at: number } | undefined;
  let pending: Promise<VerificationKey[]> | undefined;

  const fetchJwks = async (): Promise<z.infer<typeof jwksSchema>> => {
    if (options.source === 'jwks') {
      const url = `${options.jwksBaseUrl}/.well-known/jwks.json`;
      const dependency = options.dependency ?? 'servicea';
      const answer = await options.client.request({ dependency, method: 'GET', url });
      if (answer.status !== 200) throw dependencyError(dependency, 'bad_answer', `${dependency} answered ${answer.status} for its JWKS`);
      return parseAnswer(dependency, answer, jwksSchema);
    }
    const file = path.join(options.dir, 'jwks.json');
    const text = await readIfExists(file);
    // No file yet: servicea has not created its key, so no token of it can be valid.
    if (text === undefined) return { keys: [] };
    return parseAnswer('peer-keys-dir', { status: 200, contentType: 'application/json', text }, jwksSchema);
  };

  const reload = (): Promise<VerificationKey[]> => {
    pending ??= fetchJwks()
      .then(importJwks)
      .then((keys) => {
        cached = { keys, at: options.now().getTime() };
        return keys;
      })
      .finally(() => {
        pending = undefined;
      });
    return pending;
  };

  return {
    async keys(opts = {}) {
      if (!cached) return reload();
      // An empty set means servicea had no key yet: a new kid is then expected, not an attack.
      const stale = cached.keys.length === 0 || options.now().getTime() - cached.at >= minReloadMs;
      if (opts.reload && stale) return reload();
      return cached.keys;
    },
  };
}
