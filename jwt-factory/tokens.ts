import { randomUUID } from 'node:crypto';
import { SignJWT, type JWTPayload, type JWTHeaderParameters } from 'jose';
import { z } from 'zod';
import { badRequest } from '../lib/errors.js';
import { epochSeconds, verifyJwt, type VerifyOptions } from '../lib/jwt.js';
import { signingVersion, verificationKeys, type KeyEntry, type KeyVersion } from './keys.js';

/**
 * Issue and verify as pure functions over (key entry, claims, options, clock): no HTTP here.
 */

/** Envoy requires string iss/sub, aud a string or a list of strings, positive integer times. */
const positiveInt = z.number().int().positive();
export const claimsSchema = z
  .object({
    iss: z.string().min(1).optional(),
    sub: z.string().min(1).optional(),
    aud: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    nbf: positiveInt.optional(),
    jti: z.string().min(1).optional(),
  })
  .catchall(z.unknown())
  // exp and iat are the factory's to set (TOKEN_TTL, ?ttl=, ?expired=1): refusing them beats silently overriding.
  .refine((c) => !('exp' in c) && !('iat' in c), { message: 'exp and iat are set by the factory; use ?ttl= or ?expired=1' });

export type Claims = z.infer<typeof claimsSchema>;

/** Parses a request body as claims: an absent body is `{}`; anything but a JSON object is a 400. */
export function parseClaims(body: unknown): Claims {
  const result = claimsSchema.safeParse(body ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where = issue.path.length > 0 ? `claim ${issue.path.join('.')}: ` : '';
    throw badRequest(`${where}${issue.message}`, 'invalid_claims');
  }
  return result.data;
}

export interface IssueOptions {
  issuer: string;
  /** Lifetime in seconds. */
  ttl: number;
  /** `?expired=1`: the token expired an hour ago (well beyond any clock tolerance). */
  expired?: boolean;
  now: Date;
}

/** Seconds by which an `expired` token is past its `exp`: an hour, far beyond the 60 s skew. */
export const EXPIRED_BY = 3600;

/** Builds a token's claims: defaults iss, sub = keyId, iat, exp, jti; body claims add and override. */
export function buildClaims(keyId: string, claims: Claims, options: IssueOptions): JWTPayload & { iat: number; exp: number; jti: string } {
  const now = epochSeconds(options.now);
  const exp = options.expired ? now - EXPIRED_BY : now + options.ttl;
  return {
    iss: options.issuer,
    sub: keyId,
    ...claims,
    iat: options.expired ? exp - options.ttl : now,
    exp,
    jti: claims.jti ?? randomUUID(),
  };
}

/** Signs a payload with a key version; `header` may override protected header members (variants do). */
export function signPayload(version: KeyVersion, payload: JWTPayload, header: Partial<JWTHeaderParameters> = {}): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: version.alg, kid: version.kid, typ: 'JWT', ...header }).sign(version.signingKey);
}

export interface IssuedToken {
  token: string;
  kid: string;
  alg: string;
  iat: number;
  /** null only for the no-exp variant. */
  exp: number | null;
  jti: string;
  /** Size of the compact token in bytes (it travels in a header). */
  bytes: number;
}

/** Issues a token with the entry's signing key at `options.now`. */
export async function issueToken(entry: KeyEntry, claims: Claims, options: IssueOptions): Promise<IssuedToken> {
  const payload = buildClaims(entry.keyId, claims, options);
  const signer = signingVersion(entry, options.now);
  const token = await signPayload(signer, payload);
  return describeToken(token, signer, payload);
}

/** The public facts about an issued token (never the key). */
export function describeToken(token: string, version: { kid: string; alg: string }, payload: JWTPayload): IssuedToken {
  return {
    token,
    kid: version.kid,
    alg: version.alg,
    iat: Number(payload.iat ?? 0),
    exp: typeof payload.exp === 'number' ? payload.exp : null,
    jti: String(payload.jti ?? ''),
    bytes: Buffer.byteLength(token, 'utf8'),
  };
}

/**
 * Verifies a token against the entry's not-yet-retired keys only, each pinned to
 * its algorithm, with `exp` required and iss / aud / sub checked. Rejects with a TokenError.
 */
export function verifyToken(entry: KeyEntry, token: unknown, options: VerifyOptions) {
  return verifyJwt(token, verificationKeys(entry, options.now), options);
}
