import { randomBytes } from 'node:crypto';
import { base64url, generateKeyPair, SignJWT, UnsecuredJWT, type JWTPayload } from 'jose';
import type { Algorithm } from './config.js';
import { signingVersion, type KeyEntry, type KeyVersion } from './keys.js';
import { epochSeconds } from '../lib/jwt.js';
import { buildClaims, describeToken, EXPIRED_BY, signPayload, type Claims, type IssueOptions, type IssuedToken } from './tokens.js';

/**
 * Negative tokens on demand, for testing mesh rules: each variant is a token that one specific
 * check must refuse. Pure: key entry, claims, options and clock in; a token out. The verdicts
 * quote Envoy's jwt_authn status strings (source/common/jwt/status.cc).
 */

export const VARIANTS = [
  'expired',
  'not-yet-valid',
  'wrong-issuer',
  'wrong-audience',
  'unknown-kid',
  'wrong-alg',
  'bad-signature',
  'no-exp',
  'oversize',
  'alg-none',
] as const;
export type Variant = (typeof VARIANTS)[number];

/** What a mesh and the factory's own /verify answer for a variant. */
export interface Verdict {
  /** Istio / Envoy jwt_authn: the status and body it answers. */
  envoy: string;
  /** The factory's /verify error code. */
  verify: string;
}

/** The verdict per variant (documented in the README with the conditions). */
export const VERDICTS: Readonly<Record<Variant, Verdict>> = Object.freeze({
  expired: { envoy: '401 Jwt is expired', verify: 'expired' },
  'not-yet-valid': { envoy: '401 Jwt not yet valid', verify: 'not_before' },
  'wrong-issuer': { envoy: '401 Jwt issuer is not configured', verify: 'issuer_invalid' },
  'wrong-audience': { envoy: '403 Audiences in Jwt are not allowed (when the rule lists audiences)', verify: 'audience_invalid' },
  'unknown-kid': { envoy: "401 Jwks doesn't have key to match kid or alg from Jwt", verify: 'unknown_kid' },
  'wrong-alg': { envoy: "401 Jwks doesn't have key to match kid or alg from Jwt", verify: 'invalid_algorithm' },
  'bad-signature': { envoy: '401 Jwt verification fails', verify: 'invalid_signature' },
  'no-exp': { envoy: 'accepted (Istio does not set require_expiration)', verify: 'exp_missing' },
  oversize: { envoy: 'accepted up to max_request_headers_kb (60 KiB by default); many proxies refuse headers over 8 KiB', verify: 'too_large' },
  'alg-none': { envoy: '401 Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections', verify: 'malformed' },
});

/** The issuer and audience a wrong-issuer / wrong-audience token carries (.invalid never resolves, RFC 2606). */
export const WRONG_ISSUER = 'https://wrong-issuer.invalid/';
export const WRONG_AUDIENCE = 'wrong-audience.invalid';

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
