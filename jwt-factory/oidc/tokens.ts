import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { epochSeconds, TokenError } from '../../lib/jwt.js';
import { signingVersion } from '../keys.js';
import type { KeyStore } from '../keystore.js';
import { signPayload, verifyToken } from '../tokens.js';
import type { Client, User } from './config.js';
import { oauthError } from './errors.js';

/**
 * The provider's tokens: RFC 9068 access tokens and OIDC Core id tokens, signed by the
 * factory's own key store (keyId OIDC_KEY_ID) with the same code as every other token; opaque
 * secrets (codes, refresh tokens, session cookies) with their storage ids.
 */

/** Which claims each scope releases (OIDC Core §5.4). Claims a user has beyond these go with `profile`. */
export const SCOPE_CLAIMS: Readonly<Record<string, readonly string[]>> = {
  profile: ['name', 'family_name', 'given_name', 'middle_name', 'nickname', 'preferred_username', 'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at'],
  email: ['email', 'email_verified'],
  address: ['address'],
  phone: ['phone_number', 'phone_number_verified'],
};
const STANDARD_CLAIMS = new Set(Object.values(SCOPE_CLAIMS).flat());

/** The user's claims that `scope` releases. */
export function claimsForScope(user: User, scope: string): Record<string, unknown> {
  const scopes = new Set(scope.split(' '));
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(user.claims)) {
    const owner = Object.keys(SCOPE_CLAIMS).find((s) => SCOPE_CLAIMS[s]!.includes(name));
    if (owner ? scopes.has(owner) : scopes.has('profile') && !STANDARD_CLAIMS.has(name)) out[name] = value;
  }
  return out;
}

/** A new opaque secret (256 bits) and the id it is stored under. */
export function newSecret(): { value: string; id: string } {
  const value = randomBytes(32).toString('base64url');
  return { value, id: secretId(value) };
}

/** The storage id of an opaque secret: its SHA-256, so the store never holds a redeemable value. */
export const secretId = (value: string): string => createHash('sha256').update(value, 'utf8').digest('base64url');

/** OIDC Core §3.1.3.6: the left half of the hash of the access token, with the hash of the id token's alg. */
export function atHash(accessToken: string, alg: string): string {
  const hash = alg.endsWith('384') ? 'sha384' : alg.endsWith('512') || alg === 'EdDSA' ? 'sha512' : 'sha256';
  const digest = createHash(hash).update(accessToken, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

export interface TokenSigner {
  /** Signs a payload with the OIDC key as it signs now; `typ` per RFC 9068 §2.1 or JWT. */
  sign(payload: JWTPayload, typ: 'at+jwt' | 'JWT'): Promise<{ token: string; alg: string }>;
  /** Verifies a token this provider signed (any typ), at `now`, with `clockTolerance` seconds. */
  verify(token: unknown, options: { now: Date; clockTolerance: number; typ?: 'at+jwt'; audience?: string }): Promise<JWTPayload>;
}

/** The signer over the factory's key store. */
export function createTokenSigner(keystore: KeyStore, keyId: string, issuer: string): TokenSigner {
  const entry = async () => {
    const found = await keystore.get(keyId);
    if (!found) throw new Error(`the OIDC signing key ${keyId} is missing from the key store`);
    return found;
  };
  return {
    async sign(payload, typ) {
      const now = new Date((payload.iat ?? 0) * 1000);
      const version = signingVersion(await entry(), now);
      return { token: await signPayload(version, payload, { typ }), alg: version.alg };
    },
    async verify(token, options) {
      const { payload, header } = await verifyToken(await entry(), token, { issuer, now: options.now, clockTolerance: options.clockTolerance, audience: options.audience });
      // RFC 9068 §4: a resource server must check typ, so an id token cannot pass for an access token.
      if (options.typ && header.typ !== options.typ) throw new TokenError('JsonWebTokenError', 'typ_invalid', `token typ must be ${options.typ}`);
      return payload;
    },
  };
}

export interface AccessTokenInput {
  client: Client;
  sub: string;
  audience: string;
  scope: string;
  authTime?: number;
  /** RFC 8693 §4.1: the actor chain of a delegated token. */
  act?: Record<string, unknown>;
  groups?: unknown;
  now: Date;
}

/** Mints an RFC 9068 access token: typ at+jwt; iss, sub, aud, client_id, scope, iat, exp, jti, auth_time for user tokens. */
export async function mintAccessToken(signer: TokenSigner, issuer: string, input: AccessTokenInput) {
  const iat = epochSeconds(input.now);
  const payload: JWTPayload = {
    iss: issuer,
    sub: input.sub,
    aud: input.audience,
    client_id: input.client.client_id,
    iat,
    exp: iat + input.client.access_token_lifetime,
    jti: randomUUID(),
    ...(input.scope ? { scope: input.scope } : {}),
    ...(input.authTime !== undefined ? { auth_time: input.authTime } : {}),
    // RFC 9068 §2.2.3.1: groups may travel in the access token, where mesh rules can match them.
    ...(input.groups !== undefined ? { groups: input.groups } : {}),
    ...(input.act ? { act: input.act } : {}),
  };
  const { token, alg } = await signer.sign(payload, 'at+jwt');
  return { token, alg, jti: payload.jti!, expiresIn: input.client.access_token_lifetime, exp: payload.exp! };
}

export interface IdTokenInput {
  client: Client;
  user: User;
  scope: string;
  authTime: number;
  sid?: string;
  nonce?: string;
  accessToken?: string;
  now: Date;
}

/** Mints an id token per OIDC Core §2 and §3.1.3.6: aud = the client, azp, nonce, at_hash, auth_time, sid, claims by scope. */
export async function mintIdToken(signer: TokenSigner, issuer: string, alg: string, input: IdTokenInput): Promise<string> {
  const iat = epochSeconds(input.now);
  const payload: JWTPayload = {
    ...claimsForScope(input.user, input.scope),
    iss: issuer,
    sub: input.user.sub,
    aud: input.client.client_id,
    azp: input.client.client_id,
    iat,
    exp: iat + input.client.id_token_lifetime,
    jti: randomUUID(),
    auth_time: input.authTime,
    ...(input.nonce !== undefined ? { nonce: input.nonce } : {}),
    ...(input.sid !== undefined ? { sid: input.sid } : {}),
    ...(input.accessToken !== undefined ? { at_hash: atHash(input.accessToken, alg) } : {}),
  };
  return (await signer.sign(payload, 'JWT')).token;
}

/** Verifies an access token presented to userinfo, introspection or token exchange; TokenErrors become invalid_token / invalid_grant by the caller. */
export async function verifyAccessToken(signer: TokenSigner, token: unknown, now: Date): Promise<JWTPayload> {
  try {
    return await signer.verify(token, { now, clockTolerance: 0, typ: 'at+jwt' });
  } catch (err) {
    if (err instanceof TokenError) throw oauthError('invalid_token', `The access token is not valid: ${err.message}`);
    throw err;
  }
}
