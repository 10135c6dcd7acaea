import { authenticateClient, type ClientCredentials } from './clientauth.js';
import type { Client } from './config.js';
import type { ProviderContext } from './context.js';
import { OAuthError, oauthError } from './errors.js';
import { liveAccessToken } from './resources.js';

/**
 * Who is calling the factory's own API (issuance, key management): a client of OIDC_CONFIG
 * proved by any of its token-endpoint methods, or an access token of this issuer sent as a
 * bearer token (RFC 6750 §2.1). Pure over the provider's context: no HTTP here.
 */

/** The scope an access token needs to create, rotate and dump keys. */
export const ADMIN_SCOPE = 'factory:admin';

/** An authenticated caller: the client, the subject it acts as, and the scopes it holds. */
export interface Caller {
  readonly client: Client;
  /** The subject of what it may issue: the client itself (RFC 9068 §2.2 for client tokens). */
  readonly sub: string;
  /** Scopes of its access token; empty when it authenticated as a client. */
  readonly scopes: ReadonlySet<string>;
}

/**
 * Verifies a bearer access token of this issuer: typ at+jwt (RFC 9068 §4), `aud` naming the
 * factory's issuer (so a token a service received for itself cannot be replayed here), not
 * revoked, and a client's own token (sub = client_id), never a user's.
 */
export async function bearerCaller(ctx: ProviderContext, token: string): Promise<Caller> {
  const payload = await liveAccessToken(ctx, token);
  const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  if (!audiences.includes(ctx.issuer)) throw oauthError('invalid_token', `The access token is not for this factory: its aud must name ${ctx.issuer}`);
  const client = typeof payload.client_id === 'string' ? ctx.config.clients.get(payload.client_id) : undefined;
  if (!client) throw oauthError('invalid_token', 'The access token names no registered client');
  if (payload.sub !== client.client_id) throw new OAuthError('access_denied', "A user's access token cannot act for its client here; use the client's own token");
  const scopes = new Set(typeof payload.scope === 'string' ? payload.scope.split(' ').filter((s) => s !== '') : []);
  return { client, sub: client.client_id, scopes };
}

/** Authenticates a client by its registered method; a public client (method none) proves nothing and is refused. */
export async function clientCaller(ctx: ProviderContext, credentials: ClientCredentials): Promise<Caller> {
  const client = await authenticateClient(ctx, credentials, ctx.endpoints.token);
  if (client.token_endpoint_auth_method === 'none') throw new OAuthError('invalid_client', 'A public client cannot authenticate; use a client with credentials or its access token');
  return { client, sub: client.client_id, scopes: new Set() };
}
