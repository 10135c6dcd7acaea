import { randomBytes } from 'node:crypto';
import { base64url, generateKeyPair, SignJWT, UnsecuredJWT, type JWTPayload } from 'jose';
import type { Algorithm } from './config.js';
import { signingVersion, type KeyEntry, type KeyVersion } from './keys.js';
import { epochSeconds } from '../lib/jwt.js';
import { buildClaims, describeToken, EXPIRED_BY, signPayload, type Claims, type IssueOptions, type IssuedToken } from './tokens.js';
import { VERDICTS, WRONG_AUDIENCE, WRONG_ISSUER, type Variant, type Verdict } from './verdicts.js';

/**
 * Negative tokens on demand, for testing mesh rules: each variant is a token that one specific
 * check must refuse. Pure: key entry, claims, options and clock in; a token out. The verdicts
 * quote Envoy's jwt_authn status strings (source/common/jwt/status.cc).
 */

export { VARIANTS, VERDICTS, WRONG_AUDIENCE, WRONG_ISSUER, type Variant, type Verdict } from './verdicts.js';

export interface VariantOptions extends IssueOptions {
  /** TOKEN_SIZE_LIMIT: an oversize token is just over it. */
  sizeLimit: number;
}

/** A sibling algorithm for a wrong-alg token: RSA keys sign under another RSA alg with the same key. */
const SIBLING_RSA: Partial<Record<Algorithm, Algorithm>> = { RS256: 'PS256', RS384: 'RS256', RS512: 'RS256', PS256: 'RS256' };
/** For other key types a fresh key of another algorithm signs, with the entry's kid in the header. */
const OTHER_ALG: Record<string, 'ES256' | 'ES384'> = { ES256: 'ES384', ES384: 'ES256', EdDSA: 'ES256', HS256: 'ES256' };

/** Flips one bit of the signature segment, keeping the compact form intact. */
function corruptSignature(token: string): string {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const bytes = base64url.decode(signature);
  bytes[0] = bytes[0]! ^ 0x01;
  return `${header}.${payload}.${base64url.encode(bytes)}`;
}

/** Signs a token that a verifier pinned to the entry's alg must refuse, keeping the entry's kid. */
async function signWithWrongAlg(signer: KeyVersion, payload: JWTPayload): Promise<{ token: string; alg: string }> {
  const sibling = SIBLING_RSA[signer.alg];
  if (sibling) return { token: await signPayload(signer, payload, { alg: sibling }), alg: sibling };
  const alg = OTHER_ALG[signer.alg] ?? 'ES256';
  const { privateKey } = await generateKeyPair(alg);
  const token = await new SignJWT(payload).setProtectedHeader({ alg, kid: signer.kid, typ: 'JWT' }).sign(privateKey);
  return { token, alg };
}

/** Pads a claim so the signed token is just over `limit` bytes. */
async function signOversize(signer: KeyVersion, payload: JWTPayload, limit: number): Promise<string> {
  let padding = 0;
  for (;;) {
    const token = await signPayload(signer, { ...payload, pad: 'x'.repeat(padding) });
    const bytes = Buffer.byteLength(token);
    if (bytes > limit) return token;
    // base64url turns 3 payload bytes into 4 characters: grow the pad by what is missing, plus a little.
    padding += Math.ceil(((limit - bytes + 1) * 3) / 4) + 4;
  }
}

/** Issues the named negative token for an entry. */
export async function issueVariant(variant: Variant, entry: KeyEntry, claims: Claims, options: VariantOptions): Promise<IssuedToken & { variant: Variant; verdict: Verdict }> {
  const base = buildClaims(entry.keyId, claims, options);
  const now = epochSeconds(options.now);
  let payload: JWTPayload = base;
  let token: string;
  const signer = signingVersion(entry, options.now);
  let kid = signer.kid;
  let alg: string = entry.alg;
  switch (variant) {
    case 'expired':
      payload = buildClaims(entry.keyId, claims, { ...options, expired: true });
      token = await signPayload(signer, payload);
      break;
    case 'not-yet-valid':
      // An hour ahead: far beyond Envoy's 60 s skew.
      payload = { ...base, nbf: now + EXPIRED_BY, exp: now + EXPIRED_BY + options.ttl };
      token = await signPayload(signer, payload);
      break;
    case 'wrong-issuer':
      payload = { ...base, iss: WRONG_ISSUER };
      token = await signPayload(signer, payload);
      break;
    case 'wrong-audience':
      payload = { ...base, aud: WRONG_AUDIENCE };
      token = await signPayload(signer, payload);
      break;
    case 'unknown-kid':
      kid = base64url.encode(randomBytes(32));
      token = await signPayload(signer, payload, { kid });
      break;
    case 'wrong-alg':
      ({ token, alg } = await signWithWrongAlg(signer, payload));
      break;
    case 'bad-signature':
      token = corruptSignature(await signPayload(signer, payload));
      break;
    case 'no-exp': {
      const { exp: _exp, ...rest } = base;
      payload = rest;
      token = await signPayload(signer, payload);
      break;
    }
    case 'oversize':
      token = await signOversize(signer, payload, options.sizeLimit);
      break;
    case 'alg-none':
      alg = 'none';
      token = new UnsecuredJWT(payload).encode();
      break;
  }
  return { ...describeToken(token, { kid, alg }, payload), variant, verdict: VERDICTS[variant] };
}
