import { z } from 'zod';
import { assertCompactForm, verifyJwt, TokenError, type VerifyOptions } from '../lib/jwt.js';
import { dependencyError, parseAnswer, type HttpClient } from '../lib/httpclient.js';
import type { PeerKeys } from './peerkeys.js';

/**
 * How a receiver decides about a token. Scenarios 1–2 ask the factory (`POST /verify/servicea`),
 * scenarios 3–4 verify locally against servicea's public key. Both produce the factory's
 * answer shape, so a caller reads one format:
 *   { valid: true, claims }  or  { valid: false, error: { name, message, code?, expiredAt? }, claims: {} }
 */

/** The key id at the factory that signs the tokens servicea presents (sub of those tokens too). */
export const CALLER = 'servicea';

export type Verdict =
  | { valid: true; claims: Record<string, unknown> }
  | { valid: false; error: { name: string; message: string; code?: string; [k: string]: unknown }; claims: Record<string, never> };

const tokenErrorSchema = z.object({ name: z.string(), message: z.string() }).passthrough();
const validSchema = z.object({ valid: z.literal(true), claims: z.record(z.string(), z.unknown()) });
const invalidSchema = z.object({ valid: z.literal(false), error: tokenErrorSchema });

/** A refusal in the shared shape. */
export function refusal(error: TokenError | { name: string; message: string; code?: string }): Verdict {
  const body = error instanceof TokenError ? (error.toJSON() as { name: string; message: string }) : { ...error };
  return { valid: false, error: body, claims: {} };
}

/**
 * Asks the factory whether `token` was signed by servicea's factory key for `audience`, with
 * subject servicea and this receiver's expected `issuer` (the factory checks all of them, in
 * jsonwebtoken's order, so an expired token from another issuer still answers expiry first).
 */
export async function verifyWithFactory(client: HttpClient, factoryUrl: string, token: string, audience: string, issuer: string): Promise<Verdict> {
  // Oversized or malformed tokens are refused here, before they travel to the factory.
  try {
    assertCompactForm(token);
  } catch (err) {
    if (err instanceof TokenError) return refusal(err);
    throw err;
  }
  const answer = await client.request({
    dependency: 'jwt-factory',
    method: 'POST',
    url: `${factoryUrl}/verify/${CALLER}`,
    body: { token, aud: audience, sub: CALLER, iss: issuer },
    // A verification reads and changes nothing: safe to send twice.
    idempotent: true,
  });
  if (answer.status === 200) {
    const { claims } = parseAnswer('jwt-factory', answer, validSchema);
    return { valid: true, claims };
  }
  if (answer.status === 403) return refusal(parseAnswer('jwt-factory', answer, invalidSchema).error);
  // The factory has no key for servicea: no token can be valid, which is a verdict, not an outage.
  if (answer.status === 404) {
    return refusal({ name: 'JsonWebTokenError', code: 'unknown_key', message: `the factory has no key ${CALLER}` });
  }
  throw dependencyError('jwt-factory', 'bad_answer', `jwt-factory answered ${answer.status} to /verify/${CALLER}`);
}

/** verifyJwt against a peer's keys, reloading them once when the kid is unknown (a rotation). */
async function verifyWithReload(peerKeys: PeerKeys, token: string, options: VerifyOptions): Promise<{ claims: Record<string, unknown>; typ: unknown } | TokenError> {
  for (const reload of [false, true]) {
    try {
      const { payload, header } = await verifyJwt(token, await peerKeys.keys({ reload }), options);
      return { claims: payload as Record<string, unknown>, typ: header.typ };
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      if (err.code !== 'unknown_kid' || reload) return err;
    }
  }
  throw new Error('unreachable');
}

/**
 * Verifies a token self-signed by servicea: pinned alg per key, issuer, audience = this
 * receiver, subject servicea, required exp. An unknown kid reloads servicea's keys once.
 */
export async function verifySelfSigned(peerKeys: PeerKeys, token: string, options: Omit<VerifyOptions, 'subject'>): Promise<Verdict> {
  const result = await verifyWithReload(peerKeys, token, { ...options, subject: CALLER });
  return result instanceof TokenError ? refusal(result) : { valid: true, claims: result.claims };
}

/** The scope a user's access token must carry for a receiver to answer the user's profile. */
export const USER_SCOPE = 'profile';

/**
 * Verifies an end user's access token from the factory's OpenID Connect provider as a resource
 * server must (RFC 9068 §4): the factory's published keys, `typ` at+jwt (so an id token does not
 * pass), issuer, audience = this receiver, and the scope it needs.
 */
export async function verifyUserToken(factoryKeys: PeerKeys, token: string, options: Omit<VerifyOptions, 'subject'>): Promise<Verdict> {
  const result = await verifyWithReload(factoryKeys, token, options);
  if (result instanceof TokenError) return refusal(result);
  if (result.typ !== 'at+jwt') return refusal({ name: 'JsonWebTokenError', code: 'typ_invalid', message: 'jwt typ must be at+jwt (an access token)' });
  const scopes = typeof result.claims.scope === 'string' ? result.claims.scope.split(' ') : [];
  if (!scopes.includes(USER_SCOPE)) return refusal({ name: 'JsonWebTokenError', code: 'insufficient_scope', message: `jwt scope must include ${USER_SCOPE}` });
  return { valid: true, claims: result.claims };
}

/**
 * Verifies an id token from the factory's OpenID Connect provider (OIDC Core §3.1.3.7): the
 * factory's published keys, issuer, and `aud` = the client it was issued to. An access token
 * (`typ` at+jwt, RFC 9068 §2.1) is refused, so the two kinds cannot stand in for each other.
 */
export async function verifyIdToken(factoryKeys: PeerKeys, token: string, options: Omit<VerifyOptions, 'subject'>): Promise<Verdict> {
  const result = await verifyWithReload(factoryKeys, token, options);
  if (result instanceof TokenError) return refusal(result);
  if (result.typ === 'at+jwt') return refusal({ name: 'JsonWebTokenError', code: 'typ_invalid', message: 'jwt must be an id token, not an access token (typ at+jwt)' });
  return { valid: true, claims: result.claims };
}
