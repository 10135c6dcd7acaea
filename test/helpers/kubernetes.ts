import { randomUUID } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { epochSeconds } from '../../lib/jwt.js';

/**
 * A stand-in for a Kubernetes cluster's service-account token issuer: a key pair, its JWKS (as
 * the API server serves at /openid/v1/jwks), and projected tokens with the claims the kubelet's
 * tokens carry (iss, sub, aud, exp, iat, nbf, jti, kubernetes.io).
 */

export const CLUSTER_ISSUER = 'https://kubernetes.default.svc.cluster.local';

export interface StandInCluster {
  issuer: string;
  jwks: { keys: Record<string, unknown>[] };
  /** A projected token for `namespace`/`serviceAccount`, valid for `ttl` seconds from `now`; `overrides` replace claims. */
  token(options: { namespace: string; serviceAccount: string; audience: string; now?: Date; ttl?: number; overrides?: JWTPayload }): Promise<string>;
}

/** Makes the issuer's key pair (RS256, as the API server's default key). */
export async function standInCluster(issuer = CLUSTER_ISSUER): Promise<StandInCluster> {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomUUID();
  const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }] };
  return {
    issuer,
    jwks,
    token({ namespace, serviceAccount, audience, now = new Date(), ttl = 600, overrides = {} }) {
      const iat = epochSeconds(now);
      return new SignJWT({
        aud: [audience],
        exp: iat + ttl,
        iat,
        nbf: iat,
        iss: issuer,
        jti: randomUUID(),
        sub: `system:serviceaccount:${namespace}:${serviceAccount}`,
        'kubernetes.io': {
          namespace,
          node: { name: 'kind-worker', uid: randomUUID() },
          pod: { name: `${serviceAccount}-7d4b9c-x2x9q`, uid: randomUUID() },
          serviceaccount: { name: serviceAccount, uid: randomUUID() },
        },
        ...overrides,
      })
        .setProtectedHeader({ alg: 'RS256', kid })
        .sign(privateKey);
    },
  };
}

/** Replaces a token file the way the kubelet does: the new content appears at once, never half-written. */
export async function writeTokenFile(file: string, token: string): Promise<void> {
  const next = path.join(path.dirname(file), `..${path.basename(file)}.${randomUUID()}`);
  await writeFile(next, token, { mode: 0o600 });
  await rename(next, file);
}
