import { decodeJwt, type JWK } from 'jose';
import { epochSeconds, TokenError, verificationKeyFromJwk, verifyJwt, type VerificationKey } from '../../lib/jwt.js';
import { sidecarPeerUri, XfccError } from '../xfcc.js';
import type { Client } from './config.js';
import type { ProviderContext } from './context.js';
import { invalidClient, oauthError } from './errors.js';
import { limitedClientCheck } from './limiter.js';
import type { Params } from './params.js';
import { secretMatches } from './secrets.js';

/**
 * Client authentication at the token, introspection and revocation endpoints (RFC 6749 §2.3,
 * RFC 7523 §2.2 and §3, OIDC Core §9, RFC 8705 §2.1). A client uses exactly the method it
 * registered; a wrong secret, an unknown client, a bad assertion or another certificate is 401
 * invalid_client.
 */

export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** RFC 7523 §3 leaves the lifetime to the server: 5 minutes bounds how long a jti must be remembered. */
const MAX_ASSERTION_LIFETIME = 300;

/** What the HTTP layer hands over: the Authorization header, the form, and X-Forwarded-Client-Cert. */
export interface ClientCredentials {
  authorization: string | undefined;
  params: Params;
  /** The X-Forwarded-Client-Cert header as received: the caller's mTLS identity when TRUST_XFCC=true. */
  forwardedClientCert?: string | undefined;
}

/**
 * The caller's certificate URI from X-Forwarded-Client-Cert, or undefined without the header.
 * Without TRUST_XFCC the header is refused outright: with no sidecar rewriting it, the caller
 * wrote it, and a forged identity must fail loudly rather than be ignored in one place and
 * believed in another.
 */
export function forwardedPeer(ctx: ProviderContext, header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (ctx.xfccBy === undefined) {
    throw oauthError('invalid_request', 'X-Forwarded-Client-Cert is refused: this factory does not trust it (TRUST_XFCC is not true; only a factory behind its own Istio sidecar may set it)');
  }
  try {
    return sidecarPeerUri(header, ctx.xfccBy);
  } catch (err) {
    if (err instanceof XfccError) throw err.reason === 'not_our_sidecar' ? invalidClient(err.message) : oauthError('invalid_request', err.message);
    throw err;
  }
}

/** RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined for Basic. */
function formDecode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    throw oauthError('invalid_request', 'The Basic credentials are not form-urlencoded');
  }
}

/** Splits `Authorization: Basic …` into id and secret; undefined when the header is not Basic. */
function parseBasic(header: string | undefined): { id: string; secret: string } | undefined {
  const match = header === undefined ? null : /^Basic[ ]+([A-Za-z0-9+/]+={0,2})[ ]*$/i.exec(header);
  if (header !== undefined && /^Basic\b/i.test(header) && !match) throw invalidClient('The Basic credentials are malformed');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw invalidClient('The Basic credentials are malformed');
  return { id: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) };
}

/** The keys a private_key_jwt client signs with, each pinned to one algorithm. */
async function clientKeys(ctx: ProviderContext, client: Client): Promise<VerificationKey[]> {
  let jwks: JWK[];
  try {
    jwks = client.jwks ? client.jwks.keys : await ctx.fetchJwks(client.jwks_uri!);
  } catch {
    // The client's own key endpoint failing is the client's problem: a 401, never our 500.
    throw invalidClient("The client's jwks_uri could not be read");
  }
  return pinnedKeys(jwks, client.token_endpoint_auth_signing_alg);
}

/** A JWKS of someone else's as verification keys, each pinned to its `alg` (or `pinnedAlg`), asymmetric only. */
export async function pinnedKeys(jwks: readonly JWK[], pinnedAlg: string | undefined): Promise<VerificationKey[]> {
  const keys: VerificationKey[] = [];
  for (const jwk of jwks) {
    const alg = jwk.alg ?? pinnedAlg;
    // Only asymmetric keys: an HS256 header with the public key as secret must never verify (RFC 8725 §2.1).
    if (alg === undefined || jwk.kty === 'oct' || alg.startsWith('HS')) continue;
    if (pinnedAlg !== undefined && alg !== pinnedAlg) continue;
    try {
      keys.push(await verificationKeyFromJwk({ ...jwk, alg }));
    } catch {
      // A key that does not fit its alg is unusable, not fatal: the others may still verify.
    }
  }
  return keys;
}

/** RFC 7523 §3: iss = sub = client_id, aud names this server, exp required and near, jti used once. */
async function verifyAssertion(ctx: ProviderContext, assertion: string, client: Client, endpoint: string): Promise<void> {
  const now = ctx.clock();
  let payload;
  try {
    ({ payload } = await verifyJwt(assertion, await clientKeys(ctx, client), {
      issuer: client.client_id,
      subject: client.client_id,
      audience: [ctx.issuer, ctx.endpoints.token, endpoint],
      now,
      clockTolerance: ctx.clockTolerance,
    }));
  } catch (err) {
    if (err instanceof TokenError) throw invalidClient(`The client assertion is not valid: ${err.message}`);
    throw err;
  }
  if (typeof payload.jti !== 'string' || payload.jti === '') throw invalidClient('The client assertion has no jti');
  if (payload.exp! - epochSeconds(now) > MAX_ASSERTION_LIFETIME) throw invalidClient(`The client assertion must expire within ${MAX_ASSERTION_LIFETIME} seconds`);
  const fresh = await ctx.store.remember('assertion', `${client.client_id}:${payload.jti}`, (payload.exp! + ctx.clockTolerance) * 1000);
  if (!fresh) throw invalidClient('The client assertion was already used (jti replay)');
}

/** Authenticates the client of a request at `endpoint`; answers the registered client or throws invalid_client / invalid_request. */
export async function authenticateClient(ctx: ProviderContext, credentials: ClientCredentials, endpoint: string): Promise<Client> {
  const { params } = credentials;
  const peerUri = forwardedPeer(ctx, credentials.forwardedClientCert);
  const basic = parseBasic(credentials.authorization);
  const assertion = params.client_assertion;
  const used = [basic && 'client_secret_basic', params.client_secret !== undefined && 'client_secret_post', assertion !== undefined && 'private_key_jwt'].filter(Boolean);
  // RFC 6749 §2.3: a client must not use more than one authentication method per request.
  if (used.length > 1) throw oauthError('invalid_request', `Only one client authentication method may be used (got ${used.join(' and ')})`);

  let clientId = basic?.id ?? params.client_id;
  if (assertion !== undefined) {
    if (params.client_assertion_type !== JWT_BEARER_ASSERTION) throw invalidClient(`client_assertion_type must be ${JWT_BEARER_ASSERTION}`);
    let claimed: unknown;
    try {
      claimed = decodeJwt(assertion).sub;
    } catch {
      throw invalidClient('The client assertion is not a JWT');
    }
    if (clientId !== undefined && claimed !== clientId) throw invalidClient('The client assertion is for another client');
    clientId = typeof claimed === 'string' ? claimed : undefined;
  }
  if (basic && params.client_id !== undefined && params.client_id !== basic.id) throw oauthError('invalid_request', 'client_id differs from the Basic credentials');
  if (clientId === undefined) throw invalidClient('Client authentication is required');

  const client = ctx.config.clients.get(clientId);
  if (!client) throw invalidClient('Unknown client or bad credentials');
  const method = client.token_endpoint_auth_method;
  // RFC 8705 §2: the certificate is the credential and client_id names the client; a sidecar
  // reports a certificate on every mesh call, so it counts only for a tls_client_auth client.
  const presented = used[0] ?? (method === 'tls_client_auth' ? 'tls_client_auth' : 'none');
  if (presented !== method) throw invalidClient(`This client authenticates with ${method}, not ${presented}`);

  switch (method) {
    case 'client_secret_basic':
    case 'client_secret_post': {
      const secret = method === 'client_secret_basic' ? basic!.secret : params.client_secret!;
      if (!client.secret || !(await limitedClientCheck(ctx.limiter, client.client_id, () => secretMatches(client.secret!, secret)))) throw invalidClient('Unknown client or bad credentials');
      return client;
    }
    case 'private_key_jwt':
      await verifyAssertion(ctx, assertion!, client, endpoint);
      return client;
    case 'tls_client_auth':
      if (peerUri === undefined) throw invalidClient("This client authenticates with its mTLS identity (tls_client_auth): the request carries none (X-Forwarded-Client-Cert from the factory's sidecar)");
      // RFC 8705 §2.1.2: the SAN URI matches exactly, as a string.
      if (peerUri !== client.tls_client_auth_san_uri) throw invalidClient("The caller's certificate is not this client's (tls_client_auth_san_uri)");
      return client;
    case 'none':
      return client;
  }
}
