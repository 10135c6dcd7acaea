import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { decodeJwt, type JWK } from 'jose';
import { TokenError, verifyJwt, type VerificationKey } from '../../lib/jwt.js';
import type { Clock } from '../keys.js';
import { issueToken } from '../tokens.js';
import { pinnedKeys } from './clientauth.js';
import { allowedAudiences, ownedKeyIds, type Client, type TrustedIssuer } from './config.js';
import type { ProviderContext } from './context.js';
import { oauthError } from './errors.js';
import { grantScope, type TokenResponse } from './grants.js';
import type { Params } from './params.js';
import { mintAccessToken } from './tokens.js';

/**
 * The JWT bearer grant (RFC 7523 §2.1 and §3): a JWT of a trusted issuer, typically a
 * Kubernetes projected service-account token, stands for the service its `sub` is mapped to,
 * so a workload gets its token without a stored secret (as GCP STS, Azure federated
 * credentials and SPIFFE do). The token it gets is the one `/issueToken` would sign for that
 * service: `sub` = the service, signed with the service's own keyId.
 */

/** How long a trusted issuer's keys are kept: Kubernetes rotates its signing keys seldom. */
const JWKS_MAX_AGE_MS = 300_000;
/** An unknown kid reloads the keys, at most this often, so a flood of forged kids fetches nothing. */
const JWKS_MIN_REFRESH_MS = 30_000;

/** Time limit and size cap of a jwks_uri read with the issuer's own CA and token. */
const FETCH_TIMEOUT_MS = 5000;
const MAX_JWKS_BYTES = 1024 * 1024;

/**
 * GET jwks_uri as a Kubernetes API server wants it read: TLS verified against `jwks_ca_file`
 * (the cluster's CA, not the public roots), `Authorization: Bearer` with the token in
 * `jwks_token_file` (read afresh: the kubelet rotates it), no redirects, 5 s, 1 MiB at most.
 */
async function fetchWithIssuerFiles(trusted: TrustedIssuer): Promise<JWK[]> {
  const url = new URL(trusted.jwksUri!);
  const ca = trusted.jwksCaFile === undefined ? undefined : await readFile(trusted.jwksCaFile);
  const token = trusted.jwksTokenFile === undefined ? undefined : (await readFile(trusted.jwksTokenFile, 'utf8')).trim();
  const headers = { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const body = await new Promise<string>((resolve, reject) => {
    const options = { headers, timeout: FETCH_TIMEOUT_MS, ...(ca ? { ca } : {}) };
    const req = (url.protocol === 'https:' ? https : http).get(url, options, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`jwks_uri answered ${res.statusCode}`));
        return;
      }
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        if (text.length > MAX_JWKS_BYTES) req.destroy(new Error('jwks_uri answered more than 1 MiB'));
      });
      res.on('end', () => resolve(text));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`jwks_uri did not answer within ${FETCH_TIMEOUT_MS} ms`)));
    req.on('error', reject);
  });
  const parsed = JSON.parse(body) as { keys?: unknown };
  return Array.isArray(parsed.keys) ? (parsed.keys as JWK[]) : [];
}

/** The cached JWKS of trusted issuers: inline, a file (re-read), or a jwks_uri (fetched with the provider's time limit). */
export function createTrustedJwks(options: { fetchJwks: (url: string) => Promise<JWK[]>; clock: Clock }) {
  const cache = new Map<string, { at: number; keys: JWK[] }>();
  return async (trusted: TrustedIssuer, fresh: boolean): Promise<JWK[]> => {
    if (trusted.jwks) return [...trusted.jwks];
    const now = options.clock().getTime();
    const hit = cache.get(trusted.issuer);
    if (hit && now - hit.at < (fresh ? JWKS_MIN_REFRESH_MS : JWKS_MAX_AGE_MS)) return hit.keys;
    let keys: JWK[];
    try {
      if (trusted.jwksFile !== undefined) {
        const body = JSON.parse(await readFile(trusted.jwksFile, 'utf8')) as { keys?: unknown };
        keys = Array.isArray(body.keys) ? (body.keys as JWK[]) : [];
      } else {
        keys = trusted.jwksCaFile !== undefined || trusted.jwksTokenFile !== undefined ? await fetchWithIssuerFiles(trusted) : await options.fetchJwks(trusted.jwksUri!);
      }
    } catch (err) {
      // Keys that verified a minute ago still do: an issuer's outage must not stop every workload.
      if (hit) return hit.keys;
      throw err;
    }
    cache.set(trusted.issuer, { at: now, keys });
    return keys;
  };
}

/** The trusted issuer's keys, pinned; a failure to read them is the grant's problem (400), never our 500. */
async function issuerKeys(ctx: ProviderContext, trusted: TrustedIssuer, fresh: boolean): Promise<VerificationKey[]> {
  try {
    return await pinnedKeys(await ctx.trustedJwks(trusted, fresh), trusted.signingAlg);
  } catch {
    throw oauthError('invalid_grant', `The keys of ${trusted.issuer} could not be read`);
  }
}

/** RFC 8693 §2.1 `audience` (repeatable) or RFC 8707 `resource`: each one of the service's audiences; the first by default. */
function audiencesFor(service: Client, multi: Readonly<Record<string, readonly string[]>>): string | string[] {
  const allowed = allowedAudiences(service);
  const asked = [...new Set([...(multi.audience ?? []), ...(multi.resource ?? [])])];
  if (asked.length === 0) return allowed[0]!;
  const refused = asked.filter((a) => !allowed.includes(a));
  if (refused.length > 0) throw oauthError('invalid_target', `The audience ${refused.join(', ')} is not allowed for ${service.client_id}`);
  return asked.length === 1 ? asked[0]! : asked;
}

/**
 * RFC 7523 §3: the assertion is verified like any token we accept (alg pinned to the issuer's
 * key, `exp` required, `CLOCK_TOLERANCE` skew, `aud` = the issuer's configured audience, `iss`
 * trusted), its `jti` is used once within its lifetime, and its `sub` must be mapped. `client`
 * is set when the request also authenticated a client: it must be the mapped service.
 */
export async function assertionGrant(ctx: ProviderContext, client: Client | undefined, params: Params, multi: Readonly<Record<string, readonly string[]>>): Promise<TokenResponse> {
  const assertion = params.assertion;
  if (assertion === undefined) throw oauthError('invalid_request', 'Parameter assertion is required');
  let claimed: unknown;
  try {
    claimed = decodeJwt(assertion).iss;
  } catch {
    throw oauthError('invalid_grant', 'The assertion is not a JWT');
  }
  const trusted = typeof claimed === 'string' ? ctx.config.trustedIssuers.get(claimed) : undefined;
  if (!trusted) throw oauthError('invalid_grant', 'The assertion comes from an issuer this factory does not trust');
  const now = ctx.clock();
  const options = { issuer: trusted.issuer, audience: trusted.audience, now, clockTolerance: ctx.clockTolerance };
  let payload;
  try {
    try {
      ({ payload } = await verifyJwt(assertion, await issuerKeys(ctx, trusted, false), options));
    } catch (err) {
      // The issuer may have rotated its keys since they were read.
      if (!(err instanceof TokenError && err.code === 'unknown_kid')) throw err;
      ({ payload } = await verifyJwt(assertion, await issuerKeys(ctx, trusted, true), options));
    }
  } catch (err) {
    if (err instanceof TokenError) throw oauthError('invalid_grant', `The assertion is not valid: ${err.message}`);
    throw err;
  }
  if (typeof payload.jti !== 'string' || payload.jti === '') throw oauthError('invalid_grant', 'The assertion has no jti, so its replay could not be detected');
  const mapped = typeof payload.sub === 'string' ? trusted.subjects.get(payload.sub) : undefined;
  const service = mapped === undefined ? undefined : ctx.config.clients.get(mapped);
  if (!service) throw oauthError('invalid_grant', `The assertion's subject is not mapped to a service of ${trusted.issuer}`);
  if (client && client.client_id !== service.client_id) throw oauthError('invalid_grant', 'The assertion stands for another client than the one authenticated');
  const aud = audiencesFor(service, multi);
  if (Array.isArray(aud) && aud.includes(ctx.issuer)) throw oauthError('invalid_target', `The factory's own audience ${ctx.issuer} is asked alone: its token is an access token, not a service token`);
  // Checked before the jti is spent, so a refused scope leaves the assertion usable.
  const scope = aud === ctx.issuer ? grantScope(service, params.scope, '') : '';
  const fresh = await ctx.store.remember('assertion', `${trusted.issuer}|${payload.jti}`, (payload.exp! + ctx.clockTolerance) * 1000);
  if (!fresh) throw oauthError('invalid_grant', 'The assertion was already used (jti replay)');
  if (aud === ctx.issuer) {
    // RFC 9068 with sub = client_id (§2.2), as client_credentials would answer: the bearer /issueToken accepts.
    const access = await mintAccessToken(ctx.signer, ctx.issuer, { client: service, sub: service.client_id, audience: ctx.issuer, scope, now });
    return { access_token: access.token, token_type: 'Bearer', expires_in: access.expiresIn, ...(scope ? { scope } : {}) };
  }
  const { entry } = await ctx.keystore.getOrCreate(ownedKeyIds(service)[0]!);
  const issued = await issueToken(entry, { sub: service.client_id, aud }, { issuer: ctx.issuer, ttl: service.access_token_lifetime, now });
  return { access_token: issued.token, token_type: 'Bearer', expires_in: service.access_token_lifetime };
}
