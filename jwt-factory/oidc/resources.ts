import type { JWTPayload } from 'jose';
import { TokenError } from '../../lib/jwt.js';
import type { Client } from './config.js';
import type { ProviderContext } from './context.js';
import { OAuthError, oauthError } from './errors.js';
import { userBySub } from './grants.js';
import type { Params } from './params.js';
import { claimsForScope, secretId, verifyAccessToken } from './tokens.js';

/** Userinfo (OIDC Core §5.3), introspection (RFC 7662) and revocation (RFC 7009): over the context, no HTTP. */

/** The RFC 6750 §3 challenge for a refused bearer token. */
export const bearerChallenge = (err: OAuthError) => `Bearer realm="jwt-factory", error="${err.code}", error_description="${err.message.replace(/["\\]/g, '')}"`;

/** An access token of ours that is neither expired nor revoked; invalid_token otherwise. */
async function liveAccessToken(ctx: ProviderContext, token: string): Promise<JWTPayload> {
  const payload = await verifyAccessToken(ctx.signer, token, ctx.clock());
  if (typeof payload.jti === 'string' && (await ctx.store.isRemembered('revoked_jti', payload.jti))) throw oauthError('invalid_token', 'The access token is revoked');
  return payload;
}

/** OIDC Core §5.3.2: `sub` and the claims the token's scope releases; the token must carry `openid`. */
export async function userinfo(ctx: ProviderContext, token: string): Promise<Record<string, unknown>> {
  const payload = await liveAccessToken(ctx, token);
  const scope = typeof payload.scope === 'string' ? payload.scope : '';
  if (!scope.split(' ').includes('openid')) throw oauthError('insufficient_scope', 'The access token lacks the openid scope');
  const user = typeof payload.sub === 'string' ? userBySub(ctx, payload.sub) : undefined;
  if (!user) throw oauthError('invalid_token', 'The access token is not for a user');
  return { sub: user.sub, ...claimsForScope(user, scope) };
}

/** RFC 7662 §2.2: `active` and, for an active token, what it is; inactive for anything unknown, expired or revoked. */
export async function introspect(ctx: ProviderContext, params: Params): Promise<Record<string, unknown>> {
  const token = params.token;
  if (token === undefined) throw oauthError('invalid_request', 'Parameter token is required');
  // The hint only orders the look-ups (RFC 7662 §2.1): both kinds are tried.
  const order = params.token_type_hint === 'refresh_token' ? [refreshInfo, accessInfo] : [accessInfo, refreshInfo];
  for (const look of order) {
    const info = await look(ctx, token);
    if (info) return { active: true, ...info };
  }
  return { active: false };
}

async function accessInfo(ctx: ProviderContext, token: string): Promise<Record<string, unknown> | undefined> {
  if (token.split('.').length !== 3) return undefined;
  try {
    const p = await liveAccessToken(ctx, token);
    const user = typeof p.sub === 'string' ? userBySub(ctx, p.sub) : undefined;
    return {
      token_type: 'Bearer',
      ...pick(p, ['scope', 'client_id', 'sub', 'aud', 'iss', 'exp', 'iat', 'jti', 'auth_time', 'act']),
      ...(user && p.auth_time !== undefined ? { username: user.username } : {}),
    };
  } catch (err) {
    if (err instanceof OAuthError || err instanceof TokenError) return undefined;
    throw err;
  }
}

async function refreshInfo(ctx: ProviderContext, token: string): Promise<Record<string, unknown> | undefined> {
  const record = await ctx.store.getRefresh(secretId(token));
  if (!record || record.usedAt !== undefined || (await ctx.store.isRemembered('revoked_family', record.familyId))) return undefined;
  return { token_type: 'refresh_token', scope: record.scope, client_id: record.clientId, sub: record.sub, aud: record.audience, iss: ctx.issuer, exp: Math.floor(record.expiresAt / 1000) };
}

const pick = (p: JWTPayload, names: string[]) => Object.fromEntries(names.filter((n) => p[n] !== undefined).map((n) => [n, p[n]]));

/**
 * RFC 7009 §2.1: revokes a refresh token (and its whole family) or an access token (its jti,
 * seen by introspection, userinfo and token exchange) if it was issued to this client. Answers
 * nothing: an unknown or foreign token is a success too (§2.2).
 */
export async function revoke(ctx: ProviderContext, client: Client, params: Params): Promise<void> {
  const token = params.token;
  if (token === undefined) throw oauthError('invalid_request', 'Parameter token is required');
  const hint = params.token_type_hint;
  if (hint !== undefined && hint !== 'access_token' && hint !== 'refresh_token') throw oauthError('unsupported_token_type', `token_type_hint ${hint} is not supported`);
  const record = await ctx.store.getRefresh(secretId(token));
  if (record) {
    if (record.clientId === client.client_id) await ctx.store.remember('revoked_family', record.familyId, ctx.clock().getTime() + client.refresh_token_lifetime * 1000);
    return;
  }
  if (token.split('.').length !== 3) return;
  try {
    const p = await ctx.signer.verify(token, { now: ctx.clock(), clockTolerance: 0, typ: 'at+jwt' });
    if (p.client_id === client.client_id && typeof p.jti === 'string' && typeof p.exp === 'number') {
      await ctx.store.remember('revoked_jti', p.jti, (p.exp + 1) * 1000);
    }
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
  }
}

