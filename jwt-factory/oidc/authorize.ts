import { randomBytes } from 'node:crypto';
import { epochSeconds, TokenError } from '../../lib/jwt.js';
import type { Client, User } from './config.js';
import type { ProviderContext } from './context.js';
import { OAuthError, oauthError, pageError } from './errors.js';
import { grantScope, pickAudience, userBySub } from './grants.js';
import { readParams, type Params } from './params.js';
import type { SessionRecord } from './store.js';
import { newSecret, secretId } from './tokens.js';

/**
 * The authorization endpoint, the login and RP-initiated logout (RFC 6749 §4.1, OIDC Core
 * §3.1.2, RFC 7636, OAuth 2.0 Form Post Response Mode, OIDC RP-Initiated Logout 1.0): what to
 * answer, decided over the context; the routes only render it.
 */

/** RFC 6749 §4.1.2 recommends at most 10 minutes; a browser redirect takes a second, so 60 s leaves a stolen code little time. */
export const CODE_LIFETIME_SECONDS = 60;

export type ResponseMode = 'query' | 'form_post';

/** A validated authorization request. */
export interface AuthorizationRequest {
  client: Client;
  redirectUri: string;
  responseMode: ResponseMode;
  state: string | undefined;
  nonce: string | undefined;
  scope: string;
  audience: string;
  codeChallenge: string | undefined;
  prompt: ReadonlySet<string>;
  maxAge: number | undefined;
  loginHint: string | undefined;
  /** The request as received, carried through the login form to be validated again. */
  raw: string;
}

/** Where the browser goes next: parameters for the client's redirect_uri, by query or form post. */
export interface Redirect {
  uri: string;
  mode: ResponseMode;
  params: Record<string, string>;
}

export type AuthorizeOutcome = { kind: 'redirect'; redirect: Redirect } | { kind: 'login'; request: AuthorizationRequest };

const PROMPTS = new Set(['login', 'none', 'consent', 'select_account']);

/** An error for the client's redirect_uri, with its state and our issuer (RFC 9207). */
function errorRedirect(ctx: ProviderContext, target: { redirectUri: string; responseMode: ResponseMode; state: string | undefined }, err: OAuthError): Redirect {
  return {
    uri: target.redirectUri,
    mode: target.responseMode,
    params: { error: err.code, error_description: err.message, ...(target.state !== undefined ? { state: target.state } : {}), iss: ctx.issuer },
  };
}

/** An http loopback IP literal URI with an optional port: scheme and host, the port, the rest. */
const LOOPBACK_IP = /^(http:\/\/(?:127\.0\.0\.1|\[::1\]))(?::(\d{1,5}))?([/?].*)?$/;

/** The URI without its port when it is an http loopback IP literal with a valid port, else undefined. */
function loopbackWithoutPort(uri: string): string | undefined {
  const match = LOOPBACK_IP.exec(uri);
  if (!match) return undefined;
  const [, origin, port, rest] = match;
  if (port !== undefined && !/^[1-9]\d*$/.test(port)) return undefined;
  if (port !== undefined && Number(port) > 65_535) return undefined;
  return origin! + (rest ?? '');
}

/**
 * Whether `uri` is one of the client's redirect URIs: exact string comparison (RFC 9700
 * §4.1.3, no normalisation, no wildcards), except that a native client's loopback IP literal
 * redirect matches on any port (RFC 8252 §7.3: the app's port is chosen when it runs).
 * `localhost` gets no such latitude (RFC 8252 §8.3), nor does a web client.
 */
export function redirectUriRegistered(client: Client, uri: string): boolean {
  if (client.redirect_uris.includes(uri)) return true;
  if (client.application_type !== 'native') return false;
  const requested = loopbackWithoutPort(uri);
  return requested !== undefined && client.redirect_uris.some((registered) => loopbackWithoutPort(registered) === requested);
}

/**
 * Validates an authorization request. A bad client_id or redirect_uri throws a page error;
 * anything else wrong becomes an error redirect to the registered redirect_uri.
 */
export function validateAuthorization(ctx: ProviderContext, params: Params, multi: Readonly<Record<string, readonly string[]>>, raw: string): AuthorizationRequest | Redirect {
  const client = params.client_id === undefined ? undefined : ctx.config.clients.get(params.client_id);
  if (!client) throw pageError(params.client_id === undefined ? 'client_id is required' : 'Unknown client_id');
  if (params.redirect_uri === undefined) throw pageError('redirect_uri is required');
  if (!redirectUriRegistered(client, params.redirect_uri)) throw pageError('redirect_uri is not registered for this client');
  const mode = params.response_mode;
  const target = { redirectUri: params.redirect_uri, responseMode: (mode === 'form_post' ? 'form_post' : 'query') as ResponseMode, state: params.state };
  try {
    if (mode !== undefined && mode !== 'query' && mode !== 'form_post') throw oauthError('invalid_request', 'response_mode must be query or form_post');
    if (params.request !== undefined) throw oauthError('request_not_supported', 'Request objects are not supported');
    if (params.request_uri !== undefined) throw oauthError('request_uri_not_supported', 'request_uri is not supported');
    if (params.response_type === undefined) throw oauthError('invalid_request', 'response_type is required');
    if (params.response_type !== 'code' || !client.response_types.includes('code')) throw oauthError('unsupported_response_type', 'Only response_type=code is supported');
    if (!client.grant_types.includes('authorization_code')) throw oauthError('unauthorized_client', 'This client may not use the authorization code flow');
    const scope = grantScope(client, params.scope, 'openid');
    const method = params.code_challenge_method;
    const challenge = params.code_challenge;
    if (challenge !== undefined || method !== undefined) {
      // RFC 7636 §4.3: an absent method means plain, which RFC 9700 §2.1.1 says not to accept.
      if (method !== 'S256') throw oauthError('invalid_request', 'code_challenge_method must be S256 (plain is not accepted)');
      if (challenge === undefined || !/^[A-Za-z0-9_-]{43}$/.test(challenge)) throw oauthError('invalid_request', 'code_challenge must be a base64url SHA-256 (43 characters)');
    } else if (client.token_endpoint_auth_method === 'none') {
      throw oauthError('invalid_request', 'A public client must send a PKCE code_challenge (S256)');
    }
    const prompt = new Set((params.prompt ?? '').split(' ').filter((p) => p !== ''));
    for (const p of prompt) if (!PROMPTS.has(p)) throw oauthError('invalid_request', `prompt ${p} is not supported`);
    if (prompt.has('none') && prompt.size > 1) throw oauthError('invalid_request', 'prompt=none cannot be combined with other values');
    let maxAge: number | undefined;
    if (params.max_age !== undefined) {
      if (!/^\d{1,9}$/.test(params.max_age)) throw oauthError('invalid_request', 'max_age must be a whole number of seconds');
      maxAge = Number(params.max_age);
    }
    const audience = pickAudience(client, multi);
    return { client, redirectUri: params.redirect_uri, responseMode: target.responseMode, state: params.state, nonce: params.nonce, scope, audience, codeChallenge: challenge, prompt, maxAge, loginHint: params.login_hint, raw };
  } catch (err) {
    if (err instanceof OAuthError) return errorRedirect(ctx, target, err);
    throw err;
  }
}

/** Issues a code for a logged-in session and answers where to send it. */
export async function issueCode(ctx: ProviderContext, request: AuthorizationRequest, session: SessionRecord): Promise<Redirect> {
  const code = newSecret();
  await ctx.store.saveCode({
    id: code.id,
    clientId: request.client.client_id,
    redirectUri: request.redirectUri,
    scope: request.scope,
    audience: request.audience,
    codeChallenge: request.codeChallenge,
    nonce: request.nonce,
    sub: session.sub,
    authTime: session.authTime,
    sid: session.sid,
    expiresAt: ctx.clock().getTime() + CODE_LIFETIME_SECONDS * 1000,
  });
  return { uri: request.redirectUri, mode: request.responseMode, params: { code: code.value, ...(request.state !== undefined ? { state: request.state } : {}), iss: ctx.issuer } };
}

/** The live session of a cookie value, if any (and its user still exists). */
export async function findSession(ctx: ProviderContext, cookie: string | undefined): Promise<SessionRecord | undefined> {
  if (cookie === undefined || cookie === '') return undefined;
  const session = await ctx.store.getSession(secretId(cookie));
  return session && userBySub(ctx, session.sub) ? session : undefined;
}

/** GET /authorize: a code at once when the session suffices, an error redirect, or the login page. */
export async function authorize(ctx: ProviderContext, params: Params, multi: Readonly<Record<string, readonly string[]>>, raw: string, cookie: string | undefined): Promise<AuthorizeOutcome> {
  const request = validateAuthorization(ctx, params, multi, raw);
  if (!('client' in request)) return { kind: 'redirect', redirect: request };
  const session = await findSession(ctx, cookie);
  const age = session ? epochSeconds(ctx.clock()) - session.authTime : 0;
  const needsLogin = !session || request.prompt.has('login') || (request.maxAge !== undefined && age > request.maxAge);
  if (!needsLogin) return { kind: 'redirect', redirect: await issueCode(ctx, request, session!) };
  if (request.prompt.has('none')) {
    return { kind: 'redirect', redirect: errorRedirect(ctx, request, oauthError('login_required', 'The user is not logged in')) };
  }
  return { kind: 'login', request };
}

/** Reads the authorization request carried by the login form. */
export function requestFromForm(raw: string | undefined): { params: Params; multi: Readonly<Record<string, readonly string[]>>; raw: string } {
  if (raw === undefined) throw pageError('The login form lost its authorization request: start again from the application');
  const grouped: Record<string, string[]> = {};
  for (const [name, value] of new URLSearchParams(raw)) (grouped[name] ??= []).push(value);
  return { ...readParams(grouped), raw };
}

/** A new login session for `user` (a fresh cookie value on every login, so a planted cookie is useless). */
export async function startSession(ctx: ProviderContext, user: User): Promise<{ cookie: string; session: SessionRecord }> {
  const secret = newSecret();
  const now = ctx.clock();
  const session: SessionRecord = { id: secret.id, sid: randomBytes(16).toString('base64url'), sub: user.sub, authTime: epochSeconds(now), expiresAt: now.getTime() + ctx.sessionTtl * 1000 };
  await ctx.store.saveSession(session);
  return { cookie: secret.value, session };
}

/** Ends the session of a cookie. */
export async function endSession(ctx: ProviderContext, cookie: string | undefined): Promise<void> {
  if (cookie !== undefined && cookie !== '') await ctx.store.deleteSession(secretId(cookie));
}

/**
 * RP-initiated logout §2–§3: `id_token_hint` names the client (an expired hint is fine, it
 * only has to be ours), `post_logout_redirect_uri` must be registered exactly, `state` goes
 * back. Answers where to send the browser, or undefined for the provider's own page.
 */
export async function logoutTarget(ctx: ProviderContext, params: Params): Promise<string | undefined> {
  let clientId = params.client_id;
  if (params.id_token_hint !== undefined) {
    let aud: unknown;
    try {
      // A hint may be long expired (RP-Initiated Logout §2): only its signature and issuer matter.
      ({ aud } = await ctx.signer.verify(params.id_token_hint, { now: ctx.clock(), clockTolerance: 10 * 365 * 86_400 }));
    } catch (err) {
      if (err instanceof TokenError) throw pageError('id_token_hint is not an id token of this provider');
      throw err;
    }
    const hinted = Array.isArray(aud) ? aud[0] : aud;
    if (clientId !== undefined && clientId !== hinted) throw pageError('client_id differs from the id_token_hint audience');
    clientId = typeof hinted === 'string' ? hinted : undefined;
  }
  const uri = params.post_logout_redirect_uri;
  if (uri === undefined) return undefined;
  const client = clientId === undefined ? undefined : ctx.config.clients.get(clientId);
  if (!client) throw pageError('post_logout_redirect_uri needs id_token_hint or client_id');
  if (!client.post_logout_redirect_uris.includes(uri)) throw pageError('post_logout_redirect_uri is not registered for this client');
  const target = new URL(uri);
  if (params.state !== undefined) target.searchParams.set('state', params.state);
  return target.href;
}
