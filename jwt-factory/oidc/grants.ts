import { createHash } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { epochSeconds } from '../../lib/jwt.js';
import { allowedAudiences, GRANT_TYPES, JWT_BEARER_GRANT, TOKEN_EXCHANGE, type Client, type GrantType, type User } from './config.js';
import type { ProviderContext } from './context.js';
import { OAuthError, oauthError } from './errors.js';
import type { Params } from './params.js';
import { decoySecret, constantTimeEqual, secretMatches } from './secrets.js';
import { assertionGrant } from './jwtbearer.js';
import type { RefreshRecord } from './store.js';
import { mintAccessToken, mintIdToken, newSecret, secretId, verifyAccessToken } from './tokens.js';

/**
 * The token endpoint's grants (RFC 6749 §4, RFC 8693, RFC 7636) as functions over the
 * provider's context and the authenticated client: no HTTP here.
 */

/** The token endpoint's answer (RFC 6749 §5.1, OIDC Core §3.1.3.3, RFC 8693 §2.2.1). */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope?: string;
  id_token?: string;
  refresh_token?: string;
  issued_token_type?: string;
}

/** What the HTTP layer adds: the caller's address, for the login limiter. */
export interface RequestMeta {
  address: string;
}

export const TOKEN_TYPE_ACCESS = 'urn:ietf:params:oauth:token-type:access_token';
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
/** Scopes that only make sense with a user: never granted to a client acting for itself. */
const USER_SCOPES = new Set(['openid', 'profile', 'email', 'address', 'phone', 'offline_access']);

/** The scope a request gets: what it asked for (each one registered for the client), else `fallback`. */
export function grantScope(client: Client, requested: string | undefined, fallback: string): string {
  if (requested === undefined) return fallback;
  const asked = requested.split(' ').filter((s) => s !== '');
  const refused = asked.filter((s) => !client.scopes.has(s));
  if (refused.length > 0) throw oauthError('invalid_scope', `Scope not allowed for this client: ${refused.join(' ')}`);
  return [...new Set(asked)].join(' ');
}

/** RFC 8707 §2 / RFC 8693 §2.1: `resource` and `audience` pick one of the client's audiences (first = default). */
export function pickAudience(client: Client, multi: Readonly<Record<string, readonly string[]>>): string {
  const asked = [...new Set([...(multi.resource ?? []), ...(multi.audience ?? [])])];
  if (asked.length > 1) throw oauthError('invalid_target', 'Only one resource or audience per token');
  const allowed = allowedAudiences(client);
  if (asked.length === 0) return allowed[0]!;
  if (!allowed.includes(asked[0]!)) throw oauthError('invalid_target', `The audience ${asked[0]} is not allowed for this client`);
  return asked[0]!;
}

/** The user with this `sub`, if still configured. */
export const userBySub = (ctx: ProviderContext, sub: string): User | undefined => [...ctx.config.users.values()].find((u) => u.sub === sub);

/** RFC 7636 §4.4.1 with S256: BASE64URL(SHA256(verifier)) equals the challenge. */
function pkceMatches(verifier: string, challenge: string): boolean {
  return constantTimeEqual(createHash('sha256').update(verifier, 'ascii').digest('base64url'), challenge);
}

const required = (params: Params, name: string): string => {
  const value = params[name];
  if (value === undefined) throw oauthError('invalid_request', `Parameter ${name} is required`);
  return value;
};

/** Access token, id token (scope openid) and, for clients that use refresh_token, a refresh token of `familyId`. */
async function issueUserTokens(
  ctx: ProviderContext,
  client: Client,
  user: User,
  grant: { scope: string; audience: string; authTime: number; sid?: string; nonce?: string; familyId?: string },
) {
  const now = ctx.clock();
  const access = await mintAccessToken(ctx.signer, ctx.issuer, { client, sub: user.sub, audience: grant.audience, scope: grant.scope, authTime: grant.authTime, groups: user.claims.groups, now });
  const response: TokenResponse = { access_token: access.token, token_type: 'Bearer', expires_in: access.expiresIn, scope: grant.scope };
  const scopes = new Set(grant.scope.split(' '));
  if (scopes.has('openid')) {
    response.id_token = await mintIdToken(ctx.signer, ctx.issuer, access.alg, { client, user, scope: grant.scope, authTime: grant.authTime, sid: grant.sid, nonce: grant.nonce, accessToken: access.token, now });
  }
  let familyId: string | undefined;
  if (client.grant_types.includes('refresh_token')) {
    const refresh = newSecret();
    familyId = grant.familyId ?? newSecret().id;
    const record: RefreshRecord = { id: refresh.id, familyId, clientId: client.client_id, sub: user.sub, scope: grant.scope, audience: grant.audience, authTime: grant.authTime, sid: grant.sid, expiresAt: now.getTime() + client.refresh_token_lifetime * 1000 };
    await ctx.store.saveRefresh(record);
    response.refresh_token = refresh.value;
  }
  return { response, jti: access.jti, familyId };
}

/** Revokes a refresh family for as long as any of its tokens could live. */
async function revokeFamily(ctx: ProviderContext, familyId: string, client: Client | undefined): Promise<void> {
  const lifetime = client?.refresh_token_lifetime ?? 31_536_000;
  await ctx.store.remember('revoked_family', familyId, ctx.clock().getTime() + lifetime * 1000);
}

/** RFC 6749 §4.1.3 with RFC 7636 §4.6 and OIDC Core §3.1.3. */
async function authorizationCode(ctx: ProviderContext, client: Client, params: Params, multi: Readonly<Record<string, readonly string[]>>): Promise<TokenResponse> {
  const code = required(params, 'code');
  const record = await ctx.store.useCode(secretId(code));
  if (!record) throw oauthError('invalid_grant', 'The code is unknown or expired');
  if (record.usedAt !== undefined) {
    // RFC 6749 §4.1.2: a code used twice revokes what it issued the first time.
    if (record.issued?.familyId) await revokeFamily(ctx, record.issued.familyId, client);
    for (const jti of record.issued?.jtis ?? []) await ctx.store.remember('revoked_jti', jti, ctx.clock().getTime() + client.access_token_lifetime * 1000);
    throw oauthError('invalid_grant', 'The code was already used; the tokens it issued are revoked');
  }
  if (record.clientId !== client.client_id) throw oauthError('invalid_grant', 'The code was issued to another client');
  if (params.redirect_uri !== record.redirectUri) throw oauthError('invalid_grant', 'redirect_uri differs from the authorization request');
  const verifier = params.code_verifier;
  if (record.codeChallenge !== undefined) {
    if (verifier === undefined) throw oauthError('invalid_grant', 'code_verifier is required');
    if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier) || !pkceMatches(verifier, record.codeChallenge)) throw oauthError('invalid_grant', 'code_verifier does not match the code_challenge');
  } else if (verifier !== undefined) {
    // RFC 9700 §2.1.1: a verifier without a challenge is a downgrade attempt.
    throw oauthError('invalid_grant', 'code_verifier sent for a code issued without code_challenge');
  }
  if ((multi.resource ?? multi.audience) && pickAudience(client, multi) !== record.audience) throw oauthError('invalid_target', 'resource differs from the authorization request');
  const user = userBySub(ctx, record.sub);
  if (!user) throw oauthError('invalid_grant', 'The user no longer exists');
  const issued = await issueUserTokens(ctx, client, user, { scope: record.scope, audience: record.audience, authTime: record.authTime, sid: record.sid, nonce: record.nonce });
  await ctx.store.noteIssued(record.id, { familyId: issued.familyId, jtis: [issued.jti] });
  return issued.response;
}

/** RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2). */
async function refreshToken(ctx: ProviderContext, client: Client, params: Params, multi: Readonly<Record<string, readonly string[]>>): Promise<TokenResponse> {
  const id = secretId(required(params, 'refresh_token'));
  const known = await ctx.store.getRefresh(id);
  // Checked before the token is marked used, so another client's attempt cannot burn it.
  if (!known || known.clientId !== client.client_id) throw oauthError('invalid_grant', 'The refresh token is unknown, expired or issued to another client');
  const record = await ctx.store.useRefresh(id);
  if (!record || (await ctx.store.isRemembered('revoked_family', record.familyId))) throw oauthError('invalid_grant', 'The refresh token is revoked');
  if (record.usedAt !== undefined) {
    await revokeFamily(ctx, record.familyId, client);
    throw oauthError('invalid_grant', 'The refresh token was already used; every token of its family is revoked');
  }
  const granted = new Set(record.scope.split(' '));
  const scope = params.scope === undefined ? record.scope : params.scope.split(' ').filter((s) => s !== '').join(' ');
  if (scope.split(' ').some((s) => !granted.has(s))) throw oauthError('invalid_scope', 'A refresh may only narrow the scope it was granted');
  if ((multi.resource ?? multi.audience) && pickAudience(client, multi) !== record.audience) throw oauthError('invalid_target', 'resource differs from the original grant');
  const user = userBySub(ctx, record.sub);
  if (!user) throw oauthError('invalid_grant', 'The user no longer exists');
  return (await issueUserTokens(ctx, client, user, { scope, audience: record.audience, authTime: record.authTime, sid: record.sid, familyId: record.familyId })).response;
}

/** RFC 6749 §4.4: the client acts for itself, `sub` = client_id (RFC 9068 §2.2). */
async function clientCredentials(ctx: ProviderContext, client: Client, params: Params, multi: Readonly<Record<string, readonly string[]>>): Promise<TokenResponse> {
  const fallback = [...client.scopes].filter((s) => !USER_SCOPES.has(s)).join(' ');
  const scope = grantScope(client, params.scope, fallback);
  const refused = scope.split(' ').filter((s) => USER_SCOPES.has(s));
  if (refused.length > 0) throw oauthError('invalid_scope', `Scope needs a user, not client_credentials: ${refused.join(' ')}`);
  const access = await mintAccessToken(ctx.signer, ctx.issuer, { client, sub: client.client_id, audience: pickAudience(client, multi), scope, now: ctx.clock() });
  return { access_token: access.token, token_type: 'Bearer', expires_in: access.expiresIn, ...(scope ? { scope } : {}) };
}

/** Checks a username and password with the limiter; answers the user, or why not. */
export async function checkPassword(ctx: ProviderContext, username: string, password: string, address: string): Promise<{ user: User } | { refused: 'locked' | 'bad_credentials'; retryAfter?: number }> {
  const user = ctx.config.users.get(username);
  const userKey = { kind: 'user', value: username } as const;
  // An unknown user costs one scrypt too, so timing does not tell which usernames exist.
  const attempt = await ctx.limiter.attempt([userKey, { kind: 'address', value: address }], async () => (await secretMatches(user?.secret ?? decoySecret(), password)) && user !== undefined, {
    clears: [userKey],
  });
  if (attempt.outcome === 'locked') return { refused: 'locked', retryAfter: attempt.retryAfter };
  if (attempt.outcome === 'failed') return { refused: 'bad_credentials' };
  return { user: user! };
}

/** RFC 6749 §4.3, for clients that list it (the WSO2 flow: Basic client auth, scope openid, an id_token back). */
async function password(ctx: ProviderContext, client: Client, params: Params, multi: Readonly<Record<string, readonly string[]>>, meta: RequestMeta): Promise<TokenResponse> {
  const username = required(params, 'username');
  const secret = required(params, 'password');
  const scope = grantScope(client, params.scope, 'openid');
  const audience = pickAudience(client, multi);
  const checked = await checkPassword(ctx, username, secret, meta.address);
  if ('refused' in checked) {
    throw oauthError('invalid_grant', checked.refused === 'locked' ? `Too many failed logins: try again in ${checked.retryAfter} seconds` : 'Bad username or password');
  }
  return (await issueUserTokens(ctx, client, checked.user, { scope, audience, authTime: epochSeconds(ctx.clock()) })).response;
}

/** RFC 8693: a user's access token of this issuer becomes one for another audience, `act` naming the client (§4.1). */
async function tokenExchange(ctx: ProviderContext, client: Client, params: Params, multi: Readonly<Record<string, readonly string[]>>): Promise<TokenResponse> {
  const subjectToken = required(params, 'subject_token');
  const type = required(params, 'subject_token_type');
  if (type !== TOKEN_TYPE_ACCESS && type !== TOKEN_TYPE_JWT) throw oauthError('invalid_request', `subject_token_type must be ${TOKEN_TYPE_ACCESS}`);
  if (params.actor_token !== undefined) throw oauthError('invalid_request', 'actor_token is not supported: the authenticated client is the actor');
  if (params.requested_token_type !== undefined && params.requested_token_type !== TOKEN_TYPE_ACCESS && params.requested_token_type !== TOKEN_TYPE_JWT) {
    throw oauthError('invalid_request', `requested_token_type must be ${TOKEN_TYPE_ACCESS}`);
  }
  let subject: JWTPayload;
  try {
    subject = await verifyAccessToken(ctx.signer, subjectToken, ctx.clock());
  } catch (err) {
    // RFC 8693 §2.2.2: an invalid subject_token is invalid_request.
    if (err instanceof OAuthError) throw oauthError('invalid_request', `subject_token: ${err.message}`);
    throw err;
  }
  if (typeof subject.jti === 'string' && (await ctx.store.isRemembered('revoked_jti', subject.jti))) throw oauthError('invalid_request', 'subject_token is revoked');
  const granted = new Set(typeof subject.scope === 'string' ? subject.scope.split(' ') : []);
  const scope = params.scope === undefined ? [...granted].join(' ') : params.scope.split(' ').filter((s) => s !== '').join(' ');
  if (scope.split(' ').some((s) => s !== '' && !granted.has(s))) throw oauthError('invalid_scope', 'The exchanged token may only narrow the subject token scope');
  const act = { sub: client.client_id, ...(subject.act && typeof subject.act === 'object' ? { act: subject.act as Record<string, unknown> } : {}) };
  const access = await mintAccessToken(ctx.signer, ctx.issuer, {
    client,
    sub: String(subject.sub),
    audience: pickAudience(client, multi),
    scope,
    authTime: typeof subject.auth_time === 'number' ? subject.auth_time : undefined,
    groups: subject.groups,
    act,
    now: ctx.clock(),
  });
  return { access_token: access.token, issued_token_type: TOKEN_TYPE_ACCESS, token_type: 'Bearer', expires_in: access.expiresIn, ...(scope ? { scope } : {}) };
}

const GRANTS: Record<GrantType, (ctx: ProviderContext, client: Client, params: Params, multi: Readonly<Record<string, readonly string[]>>, meta: RequestMeta) => Promise<TokenResponse>> = {
  authorization_code: authorizationCode,
  refresh_token: refreshToken,
  client_credentials: clientCredentials,
  password,
  [TOKEN_EXCHANGE]: tokenExchange,
  [JWT_BEARER_GRANT]: assertionGrant,
};

/** The token endpoint: dispatches on grant_type for an authenticated client (RFC 6749 §5.2 names for every refusal). */
export function tokenRequest(ctx: ProviderContext, client: Client, params: Params, multi: Readonly<Record<string, readonly string[]>>, meta: RequestMeta): Promise<TokenResponse> {
  const grantType = required(params, 'grant_type');
  if (!(GRANT_TYPES as readonly string[]).includes(grantType)) throw oauthError('unsupported_grant_type', `grant_type ${grantType} is not supported`);
  if (!client.grant_types.includes(grantType as GrantType)) throw oauthError('unauthorized_client', `This client may not use grant_type ${grantType}`);
  return GRANTS[grantType as GrantType](ctx, client, params, multi, meta);
}
