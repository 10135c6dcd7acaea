import { generateKeyPair, createPrivateKey, createPublicKey, randomUUID, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import path from 'node:path';
import { exportJWK, calculateJwkThumbprint, SignJWT, type JWK } from 'jose';
import { readIfExists, writeFileAtomic } from '../lib/files.js';
import { epochSeconds } from '../lib/jwt.js';

/**
 * servicea's own signing key for scenarios 3 and 4. One ES256 key pair (small tokens, fast
 * key generation) kept in a folder:
 *   private.pem  PKCS#8, mode 0600, written atomically and never replaced once it exists
 *   jwks.json    the public JWKS ({ keys: [ { kty, crv, x, y, kid, alg, use } ] }), which a
 *                receiver with PEER_KEYS_SOURCE=dir reads from a shared folder
 */

export const SELF_ALG = 'ES256';
const generateKeyPairAsync = promisify(generateKeyPair);

/** servicea's key: the private half for signing, the published public JWK. */
export interface SelfKey {
  kid: string;
  alg: typeof SELF_ALG;
  privateKey: KeyObject;
  publicJwk: JWK;
}

export interface SelfKeyStore {
  /** The key in memory, if one was loaded or created. */
  current(): SelfKey | undefined;
  /** Loads the key from the folder if it is there (start-up). */
  load(): Promise<SelfKey | undefined>;
  /** Returns the existing key, or creates one when there is none; never replaces a key. */
  ensure(): Promise<{ key: SelfKey; created: boolean }>;
  /** The public JWKS: the one key, or no key before POST /gen-keys. */
  jwks(): { keys: JWK[] };
}

/** The public JWK of a key, from an allow-list of public members; kid is the RFC 7638 thumbprint. */
async function publicJwkOf(privateKey: KeyObject): Promise<JWK> {
  const full = await exportJWK(createPublicKey(privateKey));
  const pub: JWK = { kty: full.kty, crv: full.crv, x: full.x, y: full.y };
  return { ...pub, kid: await calculateJwkThumbprint(pub), alg: SELF_ALG, use: 'sig' };
}

async function fromPem(pem: string): Promise<SelfKey> {
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('the self-signing key must be an EC P-256 key (ES256)');
  }
  const publicJwk = await publicJwkOf(privateKey);
  return { kid: publicJwk.kid!, alg: SELF_ALG, privateKey, publicJwk };
}

/** Creates the store of servicea's key pair in `dir` (no state outside the returned object). */
export function createSelfKeyStore(dir: string): SelfKeyStore {
  const privatePath = path.join(dir, 'private.pem');
  const jwksPath = path.join(dir, 'jwks.json');
  let key: SelfKey | undefined;
  let pending: Promise<{ key: SelfKey; created: boolean }> | undefined;

  const readFromDisk = async (): Promise<SelfKey | undefined> => {
    const pem = await readIfExists(privatePath);
    return pem === undefined ? undefined : fromPem(pem);
  };

  const publish = (k: SelfKey) => writeFileAtomic(jwksPath, `${JSON.stringify({ keys: [k.publicJwk] }, null, 2)}\n`, { mode: 0o644, dirMode: 0o755 });

  const create = async (): Promise<{ key: SelfKey; created: boolean }> => {
    // Another process (or an earlier run) may have written it since start-up: use that one.
    const existing = await readFromDisk();
    if (existing) return { key: existing, created: false };
    const { privateKey } = await generateKeyPairAsync('ec', { namedCurve: 'P-256' });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    try {
      await writeFileAtomic(privatePath, pem, { mode: 0o600, noClobber: true, dirMode: 0o755 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // Lost a race with another writer: keep theirs, never replace a key that may have signed.
      return { key: (await readFromDisk())!, created: false };
    }
    return { key: await fromPem(pem), created: true };
  };

  return {
    current: () => key,
    async load() {
      key = await readFromDisk();
      if (key) await publish(key);
      return key;
    },
    ensure() {
      if (key) return Promise.resolve({ key, created: false });
      // Concurrent POST /gen-keys calls share one creation.
      pending ??= create()
        .then(async (result) => {
          await publish(result.key);
          key = result.key;
          return result;
        })
        .finally(() => {
          pending = undefined;
        });
      return pending;
    },
    jwks: () => ({ keys: key ? [key.publicJwk] : [] }),
  };
}

export interface SelfTokenOptions {
  issuer: string;
  audience: string;
  subject: string;
  ttlSeconds: number;
  now: Date;
  /** Signs a token whose `exp` lies an hour in the past (beyond any clock tolerance). */
  expired?: boolean;
}

/** Signs a short-lived token with servicea's key; returns the token and its jti (for logs). */
export async function signSelfToken(key: SelfKey, options: SelfTokenOptions): Promise<{ token: string; jti: string }> {
  const nowSeconds = epochSeconds(options.now);
  const exp = options.expired ? nowSeconds - 3600 : nowSeconds + options.ttlSeconds;
  const jti = randomUUID();
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .setIssuer(options.issuer)
    .setSubject(options.subject)
    .setAudience(options.audience)
    .setIssuedAt(exp - options.ttlSeconds)
    .setExpirationTime(exp)
    .setJti(jti)
    .sign(key.privateKey);
  return { token, jti };
}
