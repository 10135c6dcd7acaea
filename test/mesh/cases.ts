import { CompactSign, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import type { MeshRequest, Workload } from '../../mesh/evaluate.js';

/**
 * ONE table of cases for the mesh engine, run by three runners (engine, POST /mesh/evaluate,
 * the gateway process). Every case cites the source line or document it follows. All cases
 * share one clock (NOW) and one workload (serviceb in jwt-suite); policies come in named sets so
 * the gateway can load each set once.
 */

export let NOW = new Date('2026-01-01T00:00:00Z');
export let NOW_S = Math.floor(NOW.getTime() / 1000);

/** Moves the clock every case mints its tokens with: the real-Envoy runner uses the wall clock Envoy reads. */
export function setCaseClock(now: Date): void {
  NOW = now;
  NOW_S = Math.floor(now.getTime() / 1000);
}
export const WORKLOAD: Workload = { namespace: 'jwt-suite', labels: { app: 'serviceb' } };
export const ISS = 'https://jwt-factory/';
export const ISS_B = 'https://issuer-b.example/';
export const HOST = 'serviceb.jwt-suite';

const ENVOY = 'envoyproxy/envoy source/extensions/filters/http/jwt_authn';
const LIB = 'google/jwt_verify_lib src';
const AUTHN = 'istio/istio pilot/pkg/security/authn/policy_applier.go convertToEnvoyJwtConfig';
const AUTHZ = 'istio/istio pilot/pkg/security/authz';

interface KeyPair {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

/** Keys, token builders and JWKS for one run; built once per test file. */
export interface Ctx {
  rs: KeyPair;
  es: KeyPair;
  /** A key no JWKS knows. */
  stranger: KeyPair;
  jwks: (...keys: KeyPair[]) => string;
  /** Signs `payload` as given (no claim is added); header defaults to { alg, kid } of the key. */
  sign: (payload: Record<string, unknown>, opts?: { key?: KeyPair; header?: Record<string, unknown> }) => Promise<string>;
  /** A good token for sub (iss ISS, aud serviceb, exp in an hour) with extra claims. */
  token: (sub: string, extra?: Record<string, unknown>, opts?: { key?: KeyPair; header?: Record<string, unknown> }) => Promise<string>;
}

async function keyPair(alg: 'RS256' | 'ES256', kid: string): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

/** Generates the keys once per file. */
export async function createCtx(): Promise<Ctx> {
  const [rs, es, stranger] = await Promise.all([keyPair('RS256', 'rs-1'), keyPair('ES256', 'es-1'), keyPair('RS256', 'rs-stranger')]);
  const sign: Ctx['sign'] = async (payload, opts = {}) => {
    const key = opts.key ?? rs;
    const header = opts.header ?? { alg: key.alg, kid: key.kid };
    return new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader(header as { alg: string }).sign(key.privateKey);
  };
  return {
    rs,
    es,
    stranger,
    jwks: (...keys) => JSON.stringify({ keys: keys.map((k) => k.jwk) }),
    sign,
    token: (sub, extra = {}, opts) => sign({ iss: ISS, sub, aud: 'serviceb', iat: NOW_S, exp: NOW_S + 3600, ...extra }, opts),
  };
}

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const b64std = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64');

const meta = (kind: string, name: string, namespace = 'jwt-suite', extra: Record<string, unknown> = {}) => ({
  apiVersion: 'security.istio.io/v1',
  kind,
  metadata: { name, namespace, ...extra },
});
const reqAuthn = (name: string, jwtRules: Record<string, unknown>[], spec: Record<string, unknown> = {}) => ({ ...meta('RequestAuthentication', name), spec: { jwtRules, ...spec } });
const authz = (name: string, spec: Record<string, unknown>, namespace = 'jwt-suite', extra: Record<string, unknown> = {}) => ({ ...meta('AuthorizationPolicy', name, namespace, extra), spec });

/** Named policy sets; a case names the set it runs under. */
export const POLICY_SETS: Record<string, (c: Ctx) => unknown[]> = {
  'authn-only': (c) => [reqAuthn('factory-jwt', [{ issuer: ISS, jwks: c.jwks(c.rs, c.es) }])],
  audiences: (c) => [reqAuthn('aud-jwt', [{ issuer: ISS, jwks: c.jwks(c.rs), audiences: ['serviceb', 'https://api.example.com/'] }])],
  outputs: (c) => [
    reqAuthn('outputs-jwt', [
      {
        issuer: ISS,
        jwks: c.jwks(c.rs),
        fromHeaders: [{ name: 'x-token' }],
        outputPayloadToHeader: 'x-jwt-payload',
        outputClaimToHeaders: [
          { header: 'x-sub', claim: 'sub' },
          { header: 'x-team', claim: 'org.team' },
          { header: 'x-admin', claim: 'admin' },
          { header: 'x-level', claim: 'level' },
          { header: 'x-groups', claim: 'groups' },
        ],
      },
    ]),
  ],
  'forward-locations': (c) => [
    reqAuthn('forward-jwt', [
      { issuer: ISS, jwks: c.jwks(c.rs), forwardOriginalToken: true, fromHeaders: [{ name: 'authorization', prefix: 'Bearer ' }], fromParams: ['jwt'], fromCookies: ['session'] },
    ]),
  ],
  'strip-locations': (c) => [reqAuthn('strip-jwt', [{ issuer: ISS, jwks: c.jwks(c.rs), fromCookies: ['session'], fromParams: ['jwt'] }])],
  'custom-prefix': (c) => [reqAuthn('prefix-jwt', [{ issuer: ISS, jwks: c.jwks(c.rs), fromHeaders: [{ name: 'x-auth', prefix: 'Token ' }] }])],
  'two-issuers': (c) => [reqAuthn('issuer-a', [{ issuer: ISS, jwks: c.jwks(c.rs) }]), reqAuthn('issuer-b', [{ issuer: ISS_B, jwks: c.jwks(c.es) }])],
  'require-jwt': (c) => [
    reqAuthn('factory-jwt', [{ issuer: ISS, jwks: c.jwks(c.rs) }]),
    authz('require-jwt', { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }, { to: [{ operation: { paths: ['/healthz'] } }] }] }),
  ],
  principals: (c) => [
    reqAuthn('factory-jwt', [{ issuer: ISS, jwks: c.jwks(c.rs) }]),
    authz('principals', {
      rules: [
        { from: [{ source: { requestPrincipals: [`${ISS}/servicea`] } }], to: [{ operation: { paths: ['/exact'] } }] },
        { from: [{ source: { requestPrincipals: ['*/servicec'] } }], to: [{ operation: { paths: ['/suffix'] } }] },
        { from: [{ source: { requestPrincipals: [`${ISS}/team-*`] } }], to: [{ operation: { paths: ['/prefix'] } }] },
        { from: [{ source: { notRequestPrincipals: [`${ISS}/blocked`] } }], to: [{ operation: { paths: ['/not'] } }] },
        { from: [{ source: { requestPrincipals: [`${ISS}/spiffe://cluster.local/ns/a/sa/b`] } }], to: [{ operation: { paths: ['/slash'] } }] },
      ],
    }),
  ],
  claims: (c) => [
    reqAuthn('factory-jwt', [{ issuer: ISS, jwks: c.jwks(c.rs) }]),
    authz('claims', {
      rules: [
        { to: [{ operation: { paths: ['/groups'] } }], when: [{ key: 'request.auth.claims[groups]', values: ['admin'] }] },
        { to: [{ operation: { paths: ['/nested'] } }], when: [{ key: 'request.auth.claims[org][team]', values: ['blue'] }] },
        { to: [{ operation: { paths: ['/scope'] } }], when: [{ key: 'request.auth.claims[scope]', values: ['read'] }] },
        { to: [{ operation: { paths: ['/bool'] } }], when: [{ key: 'request.auth.claims[admin]', values: ['true'] }] },
        { to: [{ operation: { paths: ['/aud'] } }], when: [{ key: 'request.auth.audiences', values: ['serviceb'] }] },
        { to: [{ operation: { paths: ['/azp'] } }], when: [{ key: 'request.auth.presenter', values: ['web-*'] }] },
        { to: [{ operation: { paths: ['/not-guest'] } }], when: [{ key: 'request.auth.claims[role]', notValues: ['guest'] }] },
        { to: [{ operation: { paths: ['/principal'] } }], when: [{ key: 'request.auth.principal', values: [`${ISS}/servicea`] }] },
      ],
    }),
  ],
  'deny-allow': (c) => [
    reqAuthn('factory-jwt', [{ issuer: ISS, jwks: c.jwks(c.rs) }]),
    authz('deny-admin', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }, { when: [{ key: 'request.headers[x-debug]', values: ['*'] }] }] }),
    authz('allow-jwt', { action: 'ALLOW', rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] }),
  ],
  'allow-nothing': (c) => [reqAuthn('factory-jwt', [{ issuer: ISS, jwks: c.jwks(c.rs) }]), authz('allow-nothing', {})],
  'empty-rules': () => [authz('deny-nothing', { action: 'DENY' }), authz('allow-nothing', {}), authz('allow-all', { rules: [{}] })],
  scope: () => [
    authz('other-namespace', {}, 'other'),
    authz('root-deny', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/root-denied'] } }] }] }, 'istio-system'),
    authz('servicea-only', { selector: { matchLabels: { app: 'servicea' } } }),
    authz('waypoint', { targetRefs: [{ kind: 'Service', group: '', name: 'serviceb' }] }),
    authz('dry-run-nothing', {}, 'jwt-suite', { annotations: { 'istio.io/dry-run': 'true' } }),
  ],
  'hosts-methods': () => [
    authz('hosts', {
      rules: [
        { to: [{ operation: { hosts: ['*.example.com'], methods: ['GET'] } }] },
        { to: [{ operation: { hosts: ['API.EXAMPLE.ORG'], notMethods: ['DELETE'] } }] },
        { to: [{ operation: { paths: ['/items/{*}/detail'] } }] },
      ],
    }),
  ],
  'jwks-supplied': () => [reqAuthn('remote-jwt', [{ issuer: ISS, jwksUri: 'https://keys.example/jwks.json' }])],
  'jwks-unfetchable': () => [reqAuthn('remote-jwt', [{ issuer: ISS, jwksUri: 'https://jwks.unreachable.invalid/jwks.json' }])],
  'jwks-invalid': (c) => [reqAuthn('bad-jwks', [{ issuer: ISS, jwks: JSON.stringify({ keys: [{ kty: 'RSA', kid: 'rs-1', n: c.rs.jwk.n }] }) }])],
  custom: () => [
    authz('ext', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{ to: [{ operation: { paths: ['/ext/*'] } }] }] }),
    authz('ext-two', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{ to: [{ operation: { paths: ['/ext2/*'] } }] }] }),
  ],
  // The login at the edge: oauth2-proxy as the CUSTOM provider for the webui's host (its own
  // /oauth2/ routes excepted), then the user token it puts in Authorization checked as any other.
  'custom-edge': (c) => [
    authz('oauth2-proxy-at-edge', { action: 'CUSTOM', provider: { name: 'oauth2-proxy' }, rules: [{ to: [{ operation: { hosts: ['webui.example'], notPaths: ['/oauth2/*'] } }] }] }),
    reqAuthn('users', [{ issuer: ISS, jwks: c.jwks(c.rs), forwardOriginalToken: true }]),
    authz('users-on-api', { rules: [{ to: [{ operation: { notPaths: ['/api/*'] } }] }, { from: [{ source: { requestPrincipals: [`${ISS}/*`] } }], to: [{ operation: { paths: ['/api/*'] } }] }] }),
  ],
  // A dry-run CUSTOM policy: istiod writes it into the enforced rules (action DENY) of CUSTOM's RBAC filter.
  'custom-dry-run': () => [authz('ext-dry', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{ to: [{ operation: { paths: ['/dry/*'] } }] }] }, 'jwt-suite', { annotations: { 'istio.io/dry-run': 'true' } })],
  'custom-two-providers': () => [
    authz('ext-a', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{ to: [{ operation: { paths: ['/a'] } }] }] }),
    authz('ext-b', { action: 'CUSTOM', provider: { name: 'oauth2-proxy' }, rules: [{ to: [{ operation: { paths: ['/b'] } }] }] }),
  ],
  // ---- OIDC provider users (the block of the OpenID Connect provider's tokens; cases at the table's end) ----
  // serviceb as k8s/istio sets it up: one rule for the factory's issuer with servicea's key (rs) and
  // the provider's (es), the access tokens' and the id tokens' audiences; allow-nothing; servicea's
  // own principal on /service/*; a user (any sub) per scenario route, told apart by aud and act.
  'oidc-users': (c) => [
    reqAuthn('serviceb-jwt', [{ issuer: ISS, jwks: c.jwks(c.rs, c.es), audiences: ['serviceb', 'cli'], forwardOriginalToken: true }]),
    authz('allow-nothing', {}),
    authz('serviceb-allow-servicea', { rules: [{ from: [{ source: { requestPrincipals: [`${ISS}/servicea`] } }], to: [{ operation: { paths: ['/service/*'] } }] }] }),
    authz('serviceb-allow-users', {
      rules: [
        { from: [{ source: { requestPrincipals: [`${ISS}/*`] } }], to: [{ operation: { methods: ['GET'], paths: ['/scenario5-server'] } }], when: [{ key: 'request.auth.audiences', values: ['serviceb'] }, { key: 'request.auth.claims[scope]', values: ['profile'] }] },
        { from: [{ source: { requestPrincipals: [`${ISS}/*`] } }], to: [{ operation: { methods: ['GET'], paths: ['/scenario6-server'] } }], when: [{ key: 'request.auth.audiences', values: ['cli'] }] },
        { from: [{ source: { requestPrincipals: [`${ISS}/*`] } }], to: [{ operation: { methods: ['GET'], paths: ['/scenario7-server'] } }], when: [{ key: 'request.auth.claims[act][sub]', values: ['servicea'] }] },
      ],
    }),
  ],
};

/** JWKS documents supplied by the caller (evaluate `jwks`, the router body, the gateway --jwks-file). */
export const JWKS_SETS: Record<string, (c: Ctx) => Record<string, unknown>> = {
  'jwks-supplied': (c) => ({ 'https://keys.example/jwks.json': JSON.parse(c.jwks(c.rs)) }),
};

export interface Expect {
  status: 200 | 401 | 403;
  body?: string;
  /** Exact www-authenticate of a jwt_authn refusal. */
  wwwAuthenticate?: string;
  /** `<iss>/<sub>` or null (runners that can see it). */
  principal?: string | null;
  /** Headers the upstream must receive, exactly (every value, in order). */
  headers?: Record<string, string | string[]>;
  /** Headers the upstream must receive starting with this text (token-bearing values). */
  headerPrefixes?: Record<string, string>;
  /** Headers the upstream must not receive. */
  absent?: string[];
  /** The path (with query) the upstream must receive, exactly. */
  upstreamPath?: string;
  /** The start of the path the upstream must receive. */
  upstreamPathPrefix?: string;
  /** A substring of decidedBy (runners that can see it). */
  decidedBy?: string;
  /** A substring one of the explanation steps must contain. */
  step?: string;
}

export interface MeshCase {
  name: string;
  /** The source file and symbol, or the document, this case follows. */
  cite: string;
  set: keyof typeof POLICY_SETS;
  request: (c: Ctx) => Promise<MeshRequest> | MeshRequest;
}

export type Case = MeshCase & { expect: Expect };

const get = (path: string, headers: Record<string, string | string[]> = {}, method = 'GET'): MeshRequest => ({ method, path, headers: { host: HOST, ...headers } });
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const realm = (path: string, missing = false) => `Bearer realm="http://${HOST}${path}"${missing ? '' : ', error="invalid_token"'}`;
const refused = (body: string, path = '/api', status: 401 | 403 = 401): Expect => ({ status, body, wwwAuthenticate: realm(path), principal: null });
const A = `${ISS}/servicea`;
/** The provider's user in the OIDC block: her request principal. */
const U = `${ISS}/alice`;
/** A user access token as jwt-factory/oidc signs it (RFC 9068: typ at+jwt; the provider's key, es). */
const userAccess = (c: Ctx, claims: Record<string, unknown> = {}) =>
  c.sign({ iss: ISS, sub: 'alice', aud: 'serviceb', client_id: 'webui', scope: 'openid profile', iat: NOW_S, exp: NOW_S + 600, auth_time: NOW_S, jti: 'at-1', ...claims }, { key: c.es, header: { alg: 'ES256', kid: c.es.kid, typ: 'at+jwt' } });
/** The same user's id token (OIDC Core §2: aud and azp the client, typ JWT). */
const userId = (c: Ctx, opts: { header?: Record<string, unknown> } = {}) =>
  c.sign({ iss: ISS, sub: 'alice', aud: 'cli', azp: 'cli', iat: NOW_S, exp: NOW_S + 600, auth_time: NOW_S, nonce: 'n-1' }, { key: c.es, header: { alg: 'ES256', kid: c.es.kid, typ: 'JWT', ...opts.header } });

export const CASES: Case[] = [
  // ---- RequestAuthentication alone: what passes and what Envoy answers -------------------------------
  { name: 'a request without a token passes RequestAuthentication', cite: `${AUTHN} (requires_any{provider, allow_missing}); istio/api request_authentication.proto "A request that does not contain any authentication credentials will be accepted"`, set: 'authn-only', request: () => get('/api'), expect: { status: 200, principal: null, step: 'carries no token' } },
  { name: 'a valid RS256 token is accepted and the principal is <iss>/<sub>', cite: `${ENVOY}/authenticator.cc AuthenticatorImpl::startVerify; ${AUTHZ}/model/generator.go requestPrincipalGenerator`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea'))), expect: { status: 200, principal: A } },
  { name: 'a valid ES256 token is accepted by the EC key of the JWKS', cite: `${LIB}/verify.cc verifyJwtWithoutTimeChecking (kty EC)`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', {}, { key: c.es }))), expect: { status: 200, principal: A } },
  { name: 'the token header is removed before the upstream unless forwardOriginalToken', cite: `${ENVOY}/authenticator.cc handleGoodJwt (if !provider.forward() removeJwt); extractor.cc JwtHeaderLocation::removeJwt`, set: 'authn-only', request: async (c) => get('/api', { ...bearer(await c.token('servicea')), 'x-keep': 'yes' }), expect: { status: 200, absent: ['authorization'], headers: { 'x-keep': 'yes' } } },
  { name: 'a token expired 61 s ago is refused with 401 "Jwt is expired"', cite: `${LIB}/jwt.cc Jwt::verifyTimeConstraint (now > exp + clock_skew); ${ENVOY}/filter.cc Filter::onComplete`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', { exp: NOW_S - 61 }))), expect: { ...refused('Jwt is expired'), step: 'exp is 61 s in the past; Envoy allows 60 s of skew' } },
  { name: 'a token expired exactly 60 s ago is still accepted (60 s skew)', cite: `${LIB}/jwt.cc Jwt::verifyTimeConstraint; ${ENVOY}/authenticator.cc kClockSkewInSecond`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', { exp: NOW_S - 60 }))), expect: { status: 200, principal: A } },
  { name: 'a token whose nbf is 61 s ahead is refused with "Jwt not yet valid"', cite: `${LIB}/jwt.cc Jwt::verifyTimeConstraint (now + clock_skew < nbf)`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', { nbf: NOW_S + 61 }))), expect: { ...refused('Jwt not yet valid'), step: 'nbf is 61 s in the future' } },
  { name: 'a token whose nbf is 60 s ahead is accepted', cite: `${LIB}/jwt.cc Jwt::verifyTimeConstraint`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', { nbf: NOW_S + 60 }))), expect: { status: 200 } },
  { name: 'a token without exp is accepted (Istio does not require expiration)', cite: `${LIB}/jwt.cc verifyTimeConstraint (exp_ && ...); ${AUTHN} (no require_expiration)`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.sign({ iss: ISS, sub: 'servicea' }))), expect: { status: 200, principal: A, step: 'no exp' } },
  { name: 'iat in the future is not checked', cite: `${LIB}/jwt.cc verifyTimeConstraint checks nbf and exp only`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', { iat: NOW_S + 86400 }))), expect: { status: 200 } },
  { name: 'a negative exp is "not a positive 64 bit integer"', cite: `${LIB}/jwt.cc parseFromString GetUInt64 OUT_OF_RANGE; status.cc`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', { exp: -5 }))), expect: refused('Jwt payload [exp] field is not a positive 64 bit integer') },
  { name: 'a string exp is "not an integer"', cite: `${LIB}/jwt.cc parseFromString GetUInt64 WRONG_TYPE; status.cc`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', { exp: String(NOW_S + 60) }))), expect: refused('Jwt payload [exp] field is not an integer') },
  { name: 'a numeric iss is refused before the issuer check', cite: `${LIB}/jwt.cc parseFromString (iss must be a string)`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', { iss: 42 }))), expect: refused('Jwt payload [iss] field is not a string') },
  { name: 'a numeric aud is refused as "not a string or string list"', cite: `${LIB}/jwt.cc GetStringList("aud")`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', { aud: 7 }))), expect: refused('Jwt payload [aud] field is not a string or string list') },
  { name: 'a token from another issuer is "Jwt issuer is not configured"', cite: `${ENVOY}/authenticator.cc startVerify isIssuerAllowed → JwtUnknownIssuer`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', { iss: 'https://evil.example/' }))), expect: refused('Jwt issuer is not configured') },
  { name: 'an unknown kid is "Jwks doesn\'t have key to match kid or alg from Jwt"', cite: `${LIB}/verify.cc (kid differs → skip; none matched → JwksKidAlgMismatch)`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', {}, { key: c.stranger }))), expect: refused("Jwks doesn't have key to match kid or alg from Jwt") },
  { name: 'the right kid with another alg is also a kid/alg mismatch', cite: `${LIB}/verify.cc (jwk alg set and != jwt alg → skip)`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', {}, { key: c.es, header: { alg: 'ES256', kid: 'rs-1' } }))), expect: refused("Jwks doesn't have key to match kid or alg from Jwt") },
  { name: 'a token without kid is tried against every key and accepted', cite: `${LIB}/verify.cc "If kid is not specified in JWT, try all JWK"`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', {}, { header: { alg: 'RS256' } }))), expect: { status: 200, principal: A } },
  { name: 'a token without kid signed by an unknown key is "Jwt verification fails"', cite: `${LIB}/verify.cc (kid_alg_matched → JwtVerificationFail)`, set: 'authn-only', request: async (c) => get('/api', bearer(await c.token('servicea', {}, { key: c.stranger, header: { alg: 'RS256' } }))), expect: refused('Jwt verification fails') },
  {
    name: 'a tampered payload is "Jwt verification fails"',
    cite: `${LIB}/verify.cc verifySignatureRSA`,
    set: 'authn-only',
    request: async (c) => {
      const [h, , s] = (await c.token('servicea')).split('.');
      return get('/api', bearer(`${h}.${b64({ iss: ISS, sub: 'admin', exp: NOW_S + 60 })}.${s}`));
    },
    expect: refused('Jwt verification fails'),
  },
  { name: 'a value that is not a JWT is refused for its form', cite: `${LIB}/jwt.cc parseFromString (exactly 2 dots); status.cc JwtBadFormat`, set: 'authn-only', request: () => get('/api', bearer('not-a-jwt')), expect: refused('Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections') },
  { name: 'an unsigned alg:none token has an empty third part, so it is a bad form', cite: `${LIB}/jwt.cc parseFromString (absl::SkipEmpty → 2 parts)`, set: 'authn-only', request: () => get('/api', bearer(`${b64({ alg: 'none' })}.${b64({ iss: ISS, sub: 'x' })}.`)), expect: refused('Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections') },
  { name: 'alg none with a signature part is "alg is not supported"', cite: `${LIB}/jwt.cc isImplemented(alg)`, set: 'authn-only', request: () => get('/api', bearer(`${b64({ alg: 'none' })}.${b64({ iss: ISS })}.c2ln`)), expect: refused('Jwt header [alg] is not supported') },
  { name: 'a header that is not base64url is refused', cite: `${LIB}/jwt.cc WebSafeBase64Unescape(header)`, set: 'authn-only', request: () => get('/api', bearer('e30*.e30.c2ln')), expect: refused('Jwt header is an invalid Base64url encoded') },
  { name: 'a header that is not JSON is refused', cite: `${LIB}/jwt.cc JsonStringToMessage(header)`, set: 'authn-only', request: () => get('/api', bearer(`${b64('not json')}.e30.c2ln`)), expect: refused('Jwt header is an invalid JSON') },
  { name: 'a numeric kid is refused', cite: `${LIB}/jwt.cc GetString("kid") WRONG_TYPE`, set: 'authn-only', request: () => get('/api', bearer(`${b64({ alg: 'RS256', kid: 1 })}.e30.c2ln`)), expect: refused('Jwt header [kid] field is not a string') },
  { name: 'a token in the access_token query parameter is found and removed from the path', cite: `${ENVOY}/extractor.cc (default locations; JwtParamLocation::removeJwt)`, set: 'authn-only', request: async (c) => get(`/api?access_token=${await c.token('servicea')}&page=2`), expect: { status: 200, principal: A, upstreamPath: '/api?page=2' } },
  { name: 'lower-case "bearer" is not the Bearer prefix: no token, the header goes upstream', cite: `${ENVOY}/extractor.cc extract (value_str.find(value_prefix) is case-sensitive; not found → skip)`, set: 'authn-only', request: () => get('/api', { authorization: 'bearer garbage' }), expect: { status: 200, principal: null, headers: { authorization: 'bearer garbage' } } },
  { name: 'extra spaces after "Bearer" are skipped', cite: `${ENVOY}/extractor.cc ExtractorImpl::extractJWT (first base64url character after the prefix)`, set: 'authn-only', request: async (c) => get('/api', { authorization: `Bearer    ${await c.token('servicea')}` }), expect: { status: 200, principal: A } },
  { name: 'two tokens: a good header token and an expired query token fail together', cite: `${ENVOY}/authenticator.cc doneWithStatus ("If a request has multiple tokens, all of them must be valid")`, set: 'authn-only', request: async (c) => get(`/api?access_token=${await c.token('servicea', { exp: NOW_S - 3600 })}`, bearer(await c.token('servicea'))), expect: { status: 401, body: 'Jwt is expired' } },
  { name: 'two Authorization headers are joined with "," by Envoy, so the token is malformed', cite: `envoyproxy/envoy source/common/http/header_map_impl.cc (inline headers such as authorization coalesce with ","); ${LIB}/jwt.cc parseFromString`, set: 'authn-only', request: async (c) => get('/api', { authorization: [`Bearer ${await c.token('servicea')}`, 'Bearer e30.e30.c2ln'] }), expect: { status: 401, body: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections' } },
  { name: 'a CORS preflight with a bad token is let through by jwt_authn', cite: `${ENVOY}/filter.cc isCorsPreflightRequest; ${AUTHN} BypassCorsPreflight: true`, set: 'authn-only', request: () => get('/api', { ...bearer('x.y.z'), origin: 'https://app.example', 'access-control-request-method': 'POST' }, 'OPTIONS'), expect: { status: 200, principal: null, step: 'CORS preflight' } },
  { name: 'an OPTIONS request without Origin is not a preflight: the bad token is checked', cite: `${ENVOY}/filter.cc isCorsPreflightRequest (Origin and Access-Control-Request-Method required)`, set: 'authn-only', request: () => get('/api', bearer('x.y.z'), 'OPTIONS'), expect: { status: 401, body: 'Jwt header is an invalid Base64url encoded' } },

  // ---- audiences ---------------------------------------------------------------------------------------
  { name: 'an audience in the list is accepted', cite: `${LIB.replace(' src', '')} check_audience.cc areAudiencesAllowed`, set: 'audiences', request: async (c) => get('/api', bearer(await c.token('servicea'))), expect: { status: 200 } },
  { name: 'audiences are compared without scheme and trailing slash', cite: 'envoyproxy/envoy source/common/jwt/check_audience.cc sanitizeAudience', set: 'audiences', request: async (c) => get('/api', bearer(await c.token('servicea', { aud: 'https://serviceb/' }))), expect: { status: 200 } },
  { name: 'a configured https://…/ audience accepts the bare host', cite: 'envoyproxy/envoy source/common/jwt/check_audience.cc CheckAudience constructor sanitizes configured audiences', set: 'audiences', request: async (c) => get('/api', bearer(await c.token('servicea', { aud: 'api.example.com' }))), expect: { status: 200 } },
  { name: 'one matching audience in a list is enough', cite: 'envoyproxy/envoy source/common/jwt/check_audience.cc areAudiencesAllowed (any)', set: 'audiences', request: async (c) => get('/api', bearer(await c.token('servicea', { aud: ['other', 'serviceb'] }))), expect: { status: 200 } },
  { name: 'a wrong audience is 403 "Audiences in Jwt are not allowed"', cite: `${ENVOY}/filter.cc onComplete (JwtAudienceNotAllowed → Forbidden)`, set: 'audiences', request: async (c) => get('/api', bearer(await c.token('servicea', { aud: 'servicec' }))), expect: refused('Audiences in Jwt are not allowed', '/api', 403) },
  { name: 'a token without aud fails a rule that lists audiences', cite: 'envoyproxy/envoy source/common/jwt/check_audience.cc areAudiencesAllowed (empty jwt list)', set: 'audiences', request: async (c) => get('/api', bearer(await c.sign({ iss: ISS, sub: 'servicea', exp: NOW_S + 60 }))), expect: refused('Audiences in Jwt are not allowed', '/api', 403) },
  { name: 'audience is checked after time: an expired wrong-audience token is 401 expired', cite: `${ENVOY}/authenticator.cc startVerify (verifyTimeConstraint before areAudiencesAllowed)`, set: 'audiences', request: async (c) => get('/api', bearer(await c.token('servicea', { aud: 'servicec', exp: NOW_S - 120 }))), expect: refused('Jwt is expired') },

  // ---- outputs -------------------------------------------------------------------------------------------
  {
    name: 'outputPayloadToHeader and outputClaimToHeaders reach the upstream; the token header is removed',
    cite: `${ENVOY}/authenticator.cc handleGoodJwt, addJWTClaimToHeader (strings, integers, bools; nested "a.b"; lists as base64 JSON)`,
    set: 'outputs',
    request: async (c) => get('/api', { 'x-token': await c.token('servicea', { org: { team: 'blue' }, admin: true, level: 3, groups: ['a', 'b'] }) }),
    expect: { status: 200, principal: A, headers: { 'x-sub': 'servicea', 'x-team': 'blue', 'x-admin': 'true', 'x-level': '3', 'x-groups': b64std(['a', 'b']) }, absent: ['x-token'] },
  },
  {
    name: 'a list or object claim goes upstream as base64 of its JSON',
    cite: `${ENVOY}/authenticator.cc addJWTClaimToHeader (list and struct values); mesh/istio/releases.ts claimToHeadersJson`,
    set: 'outputs',
    request: async (c) => get('/api', { 'x-token': await c.token('servicea', { groups: ['a'], org: { team: 'blue' }, level: 1.5 }) }),
    expect: { status: 200, headers: { 'x-groups': b64std(['a']), 'x-team': 'blue', 'x-level': '1.500000' } },
  },
  {
    name: 'the payload header carries the token payload segment',
    cite: `${ENVOY}/authenticator.cc handleGoodJwt (payload_str_base64url_, pad_forward_payload_header unset by istiod)`,
    set: 'outputs',
    request: async (c) => get('/api', { 'x-token': await c.sign({ iss: ISS, sub: 'p' }) }),
    expect: { status: 200, headers: { 'x-jwt-payload': b64({ iss: ISS, sub: 'p' }) } },
  },
  { name: 'a client cannot smuggle an output header: it is removed even without a token', cite: `${ENVOY}/extractor.cc sanitizeHeaders (forward_payload_header and claim_to_headers)`, set: 'outputs', request: () => get('/api', { 'x-sub': 'admin', 'x-jwt-payload': 'forged' }), expect: { status: 200, absent: ['x-sub', 'x-jwt-payload'] } },
  { name: 'with fromHeaders set, Authorization is no longer a token location', cite: `${ENVOY}/extractor.cc addProvider (defaults only when no location is given)`, set: 'outputs', request: () => get('/api', bearer('garbage')), expect: { status: 200, principal: null, headers: { authorization: 'Bearer garbage' } } },

  // ---- locations and forwarding ---------------------------------------------------------------------------
  { name: 'forwardOriginalToken keeps the Authorization header', cite: `${AUTHN} (Forward: jwtRule.ForwardOriginalToken); ${ENVOY}/authenticator.cc handleGoodJwt`, set: 'forward-locations', request: async (c) => get('/api', bearer(await c.token('servicea'))), expect: { status: 200, principal: A, headerPrefixes: { authorization: 'Bearer ey' } } },
  { name: 'a token in a configured cookie is verified', cite: `${ENVOY}/extractor.cc extract (cookie locations)`, set: 'forward-locations', request: async (c) => get('/api', { cookie: `theme=dark; session=${await c.token('servicea')}` }), expect: { status: 200, principal: A } },
  { name: 'a token in a configured query parameter is verified and kept with forwardOriginalToken', cite: `${ENVOY}/extractor.cc (fromParams); authenticator.cc handleGoodJwt`, set: 'forward-locations', request: async (c) => get(`/api?jwt=${await c.token('servicea')}`), expect: { status: 200, principal: A, upstreamPathPrefix: '/api?jwt=ey' } },
  { name: 'a bad token in a cookie is refused', cite: `${ENVOY}/extractor.cc (cookie locations); authenticator.cc startVerify`, set: 'forward-locations', request: () => get('/api', { cookie: 'session=abc' }), expect: { status: 401, body: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections' } },
  { name: 'a cookie token is never removed, even without forwardOriginalToken', cite: `${ENVOY}/extractor.cc JwtCookieLocation::removeJwt ("TODO: remove JWT from cookies")`, set: 'strip-locations', request: async (c) => get('/api', { cookie: `session=${await c.token('servicea')}` }), expect: { status: 200, principal: A, headerPrefixes: { cookie: 'session=ey' }, step: 'never removes a token from a cookie' } },
  { name: 'a query token is removed without forwardOriginalToken', cite: `${ENVOY}/extractor.cc JwtParamLocation::removeJwt`, set: 'strip-locations', request: async (c) => get(`/api?jwt=${await c.token('servicea')}`), expect: { status: 200, principal: A, upstreamPath: '/api' } },
  { name: 'a custom header with its prefix is read', cite: `${ENVOY}/extractor.cc addHeaderConfig / extract`, set: 'custom-prefix', request: async (c) => get('/api', { 'x-auth': `Token ${await c.token('servicea')}` }), expect: { status: 200, principal: A, absent: ['x-auth'] } },
  { name: 'the prefix may appear anywhere in the header value', cite: `${ENVOY}/extractor.cc extract (value_str.find(prefix), not starts_with)`, set: 'custom-prefix', request: async (c) => get('/api', { 'x-auth': `MyToken ${await c.token('servicea')}` }), expect: { status: 200, principal: A } },
  { name: 'a header without the prefix is not a token at all: the request passes as anonymous', cite: `${ENVOY}/extractor.cc extract ("value_prefix not found anywhere in value_str, so skip")`, set: 'custom-prefix', request: async (c) => get('/api', { 'x-auth': await c.token('servicea') }), expect: { status: 200, principal: null } },

  // ---- several issuers ---------------------------------------------------------------------------------------
  { name: 'with two RequestAuthentications, issuer A is accepted', cite: `${AUTHN} (any{P0, P1, all{any{P0,allow_missing}, any{P1,allow_missing}}})`, set: 'two-issuers', request: async (c) => get('/api', bearer(await c.token('servicea'))), expect: { status: 200, principal: A } },
  { name: 'with two RequestAuthentications, issuer B is accepted', cite: `${AUTHN}; ${ENVOY}/verifier.cc AnyVerifierImpl::onComplete`, set: 'two-issuers', request: async (c) => get('/api', bearer(await c.token('b-user', { iss: ISS_B }, { key: c.es }))), expect: { status: 200, principal: `${ISS_B}/b-user` } },
  { name: 'a third issuer is "Jwt issuer is not configured"', cite: `${ENVOY}/verifier.cc AnyVerifierImpl::onComplete (JwtUnknownIssuer preferred over JwtMissed)`, set: 'two-issuers', request: async (c) => get('/api', bearer(await c.token('x', { iss: 'https://c.example/' }))), expect: refused('Jwt issuer is not configured') },
  { name: 'an expired token of issuer A reports expiry, not the other provider\'s unknown issuer', cite: `${ENVOY}/verifier.cc AnyVerifierImpl::onComplete ("Prefer errors which are not JwtMissed nor JwtUnknownIssuer")`, set: 'two-issuers', request: async (c) => get('/api', bearer(await c.token('servicea', { exp: NOW_S - 600 }))), expect: refused('Jwt is expired') },
  { name: 'with two RequestAuthentications a request without token still passes', cite: `${AUTHN} (inner AND of allow_missing)`, set: 'two-issuers', request: () => get('/api'), expect: { status: 200, principal: null } },

  // ---- requiring a token with AuthorizationPolicy --------------------------------------------------------------------
  { name: 'no token on a path that requires a principal is 403 "RBAC: access denied"', cite: `istio/api request_authentication.proto example requestPrincipals ["*"]; ${AUTHZ}/builder/builder.go (ALLOW, none matched)`, set: 'require-jwt', request: () => get('/api'), expect: { status: 403, body: 'RBAC: access denied', principal: null, decidedBy: 'no ALLOW rule matches' } },
  { name: 'no token on the open path is allowed by the second rule', cite: `${AUTHZ}/model/model.go New (rules OR'ed)`, set: 'require-jwt', request: () => get('/healthz'), expect: { status: 200, decidedBy: 'ns[jwt-suite]-policy[require-jwt]-rule[1]' } },
  { name: 'a valid token satisfies requestPrincipals ["*"]', cite: `${AUTHZ}/model/generator.go requestPrincipalGenerator (value == "*")`, set: 'require-jwt', request: async (c) => get('/api', bearer(await c.token('servicea'))), expect: { status: 200, decidedBy: 'ns[jwt-suite]-policy[require-jwt]-rule[0]' } },
  { name: 'a token without sub does not satisfy requestPrincipals ["*"]', cite: `${AUTHZ}/model/generator.go (matchAny = regex ".+" on iss AND sub)`, set: 'require-jwt', request: async (c) => get('/api', bearer(await c.sign({ iss: ISS, exp: NOW_S + 60 }))), expect: { status: 403, body: 'RBAC: access denied' } },
  { name: 'dot segments are normalised before matching paths', cite: 'Istio meshConfig.pathNormalization BASE (Envoy normalize_path, RFC 3986 §5.2.4)', set: 'require-jwt', request: () => get('/healthz/../api'), expect: { status: 403, body: 'RBAC: access denied' } },
  { name: 'a CORS preflight skips jwt_authn but not RBAC', cite: `${ENVOY}/filter.cc (bypass is jwt_authn's only); ${AUTHZ}/builder/builder.go`, set: 'require-jwt', request: () => get('/api', { origin: 'https://app.example', 'access-control-request-method': 'GET' }, 'OPTIONS'), expect: { status: 403, body: 'RBAC: access denied' } },
  { name: 'jwt_authn refuses before RBAC looks at the request', cite: `${ENVOY}/filter.cc onComplete (local reply stops the filter chain)`, set: 'require-jwt', request: () => get('/healthz', bearer('junk')), expect: { status: 401, body: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections', wwwAuthenticate: realm('/healthz') } },

  // ---- request principals --------------------------------------------------------------------------------------------
  { name: 'an exact request principal matches its token', cite: `${AUTHZ}/model/generator.go requestPrincipalGenerator (split at the last "/", iss and sub exact)`, set: 'principals', request: async (c) => get('/exact', bearer(await c.token('servicea'))), expect: { status: 200 } },
  { name: 'an exact request principal refuses another subject', cite: `${AUTHZ}/model/generator.go requestPrincipalGenerator`, set: 'principals', request: async (c) => get('/exact', bearer(await c.token('serviceb'))), expect: { status: 403, body: 'RBAC: access denied' } },
  { name: '"*/servicec" matches any issuer with sub servicec', cite: `${AUTHZ}/model/generator.go (prefix "*", iss == "*" → any iss, sub exact)`, set: 'principals', request: async (c) => get('/suffix', bearer(await c.token('servicec'))), expect: { status: 200 } },
  { name: '"<iss>/team-*" matches subjects by prefix', cite: `${AUTHZ}/model/generator.go (suffix "*": iss exact, sub prefix)`, set: 'principals', request: async (c) => get('/prefix', bearer(await c.token('team-blue'))), expect: { status: 200 } },
  { name: '"<iss>/team-*" refuses "teamx"', cite: `${AUTHZ}/model/generator.go (sub prefix "team-")`, set: 'principals', request: async (c) => get('/prefix', bearer(await c.token('teamx'))), expect: { status: 403, body: 'RBAC: access denied' } },
  { name: 'notRequestPrincipals refuses the listed principal', cite: `${AUTHZ}/model/model.go rule.principal (notValues → principalNot)`, set: 'principals', request: async (c) => get('/not', bearer(await c.token('blocked'))), expect: { status: 403, body: 'RBAC: access denied' } },
  { name: 'notRequestPrincipals lets a request without any token through', cite: `${AUTHZ}/model/model.go (NOT of a metadata matcher on absent metadata is true)`, set: 'principals', request: () => get('/not'), expect: { status: 200 } },
  { name: 'a subject containing "/" never matches an exact requestPrincipal (split at the last "/")', cite: `${AUTHZ}/model/generator.go ("Use the last index of \\"/\\" since issuer may be an URL")`, set: 'principals', request: async (c) => get('/slash', bearer(await c.token('spiffe://cluster.local/ns/a/sa/b'))), expect: { status: 403, body: 'RBAC: access denied' } },

  // ---- claims ------------------------------------------------------------------------------------------------------------
  { name: 'a list claim matches when one element is equal', cite: `${AUTHZ}/model/matcher/metadata.go MetadataListValueMatcher (OrMatch{list one_of, value})`, set: 'claims', request: async (c) => get('/groups', bearer(await c.token('u', { groups: ['dev', 'admin'] }))), expect: { status: 200 } },
  { name: 'a string claim matches by value', cite: `${AUTHZ}/model/matcher/metadata.go (useExtendedJwt: also a plain string)`, set: 'claims', request: async (c) => get('/groups', bearer(await c.token('u', { groups: 'admin' }))), expect: { status: 200 } },
  { name: 'a list claim without the value is refused', cite: `${AUTHZ}/model/generator.go requestClaimGenerator`, set: 'claims', request: async (c) => get('/groups', bearer(await c.token('u', { groups: ['dev'] }))), expect: { status: 403, body: 'RBAC: access denied' } },
  { name: 'nested claims are addressed as [org][team]', cite: `${AUTHZ}/model/util.go extractNameInNestedBrackets; https://istio.io/latest/docs/reference/config/security/conditions/`, set: 'claims', request: async (c) => get('/nested', bearer(await c.token('u', { org: { team: 'blue' } }))), expect: { status: 200 } },
  { name: 'a nested claim with another value is refused', cite: `${AUTHZ}/model/util.go extractNameInNestedBrackets`, set: 'claims', request: async (c) => get('/nested', bearer(await c.token('u', { org: { team: 'red' } }))), expect: { status: 403, body: 'RBAC: access denied' } },
  { name: 'scope is split on spaces, so one scope matches', cite: `${AUTHN} buildSpaceDelimitedClaims (scope, permission)`, set: 'claims', request: async (c) => get('/scope', bearer(await c.token('u', { scope: 'write read' }))), expect: { status: 200 } },
  { name: 'a boolean claim never matches the string "true"', cite: `${AUTHZ}/model/matcher/metadata.go (string matchers only match string values)`, set: 'claims', request: async (c) => get('/bool', bearer(await c.token('u', { admin: true }))), expect: { status: 403, body: 'RBAC: access denied' } },
  { name: 'request.auth.audiences matches one of the token audiences', cite: `${AUTHZ}/model/generator.go requestAudiencesGenerator (claim aud)`, set: 'claims', request: async (c) => get('/aud', bearer(await c.token('u', { aud: ['x', 'serviceb'] }))), expect: { status: 200 } },
  { name: 'request.auth.presenter matches azp with a prefix', cite: `${AUTHZ}/model/generator.go requestPresenterGenerator (claim azp)`, set: 'claims', request: async (c) => get('/azp', bearer(await c.token('u', { azp: 'web-frontend' }))), expect: { status: 200 } },
  { name: 'notValues refuses the listed claim value', cite: `${AUTHZ}/model/model.go (notValues → principalNot)`, set: 'claims', request: async (c) => get('/not-guest', bearer(await c.token('u', { role: 'guest' }))), expect: { status: 403, body: 'RBAC: access denied' } },
  { name: 'notValues lets a request without a token through', cite: `${AUTHZ}/model/model.go (NOT of an absent claim)`, set: 'claims', request: () => get('/not-guest'), expect: { status: 200 } },
  { name: 'request.auth.principal in when matches like requestPrincipals', cite: `${AUTHZ}/model/model.go (attrRequestPrincipal → requestPrincipalGenerator)`, set: 'claims', request: async (c) => get('/principal', bearer(await c.token('servicea'))), expect: { status: 200 } },

  // ---- DENY, ALLOW, allow-nothing, scope ---------------------------------------------------------------------------------
  { name: 'DENY wins over a matching ALLOW', cite: `${AUTHZ}/builder/builder.go BuildHTTP (DENY filter before ALLOW)`, set: 'deny-allow', request: async (c) => get('/admin/users', bearer(await c.token('servicea'))), expect: { status: 403, body: 'RBAC: access denied', decidedBy: 'DENY ns[jwt-suite]-policy[deny-admin]-rule[0]' } },
  { name: 'a path outside the DENY is allowed by ALLOW', cite: `${AUTHZ}/builder/builder.go`, set: 'deny-allow', request: async (c) => get('/data', bearer(await c.token('servicea'))), expect: { status: 200, decidedBy: 'ALLOW ns[jwt-suite]-policy[allow-jwt]-rule[0]' } },
  { name: 'a header condition "*" means present', cite: `${AUTHZ}/model/matcher/header.go HeaderMatcher ("*" → PresentMatch)`, set: 'deny-allow', request: async (c) => get('/data', { ...bearer(await c.token('servicea')), 'x-debug': '' }), expect: { status: 403, body: 'RBAC: access denied', decidedBy: 'rule[1]' } },
  { name: 'an allow-nothing policy refuses even a valid token', cite: 'https://istio.io/latest/docs/reference/config/security/authorization-policy/ (allow-nothing); builder.go rbacPolicyMatchNever', set: 'allow-nothing', request: async (c) => get('/api', bearer(await c.token('servicea'))), expect: { status: 403, body: 'RBAC: access denied', principal: A } },
  { name: 'a DENY without rules denies nothing; an ALLOW rule {} allows all', cite: `${AUTHZ}/builder/builder.go (no rules → never matches; empty rule → permissionAny/principalAny)`, set: 'empty-rules', request: () => get('/anything'), expect: { status: 200, decidedBy: 'policy[allow-all]-rule[0]' } },
  { name: 'policies of other namespaces, other selectors, targetRefs and dry-run do not apply', cite: 'istio/istio pilot/pkg/model/authorization.go ListAuthorizationPolicies; builder.go isDryRun', set: 'scope', request: () => get('/ok'), expect: { status: 200 } },
  { name: 'a policy in the root namespace applies to every workload', cite: 'istio/istio pilot/pkg/model/authorization.go (root namespace policies)', set: 'scope', request: () => get('/root-denied'), expect: { status: 403, body: 'RBAC: access denied', decidedBy: 'ns[istio-system]-policy[root-deny]' } },
  { name: 'hosts "*.example.com" with methods GET allow a GET', cite: `${AUTHZ}/model/matcher/header.go HostMatcher (suffix, ignore case)`, set: 'hosts-methods', request: () => ({ method: 'GET', path: '/', headers: { host: 'a.example.com' } }), expect: { status: 200 } },
  { name: 'the same host with POST is refused', cite: `${AUTHZ}/model/generator.go methodGenerator`, set: 'hosts-methods', request: () => ({ method: 'POST', path: '/', headers: { host: 'a.example.com' } }), expect: { status: 403, body: 'RBAC: access denied' } },
  { name: 'hosts are compared case-insensitively', cite: `${AUTHZ}/model/matcher/header.go HostMatcher (StringMatcherExact(v, true))`, set: 'hosts-methods', request: () => ({ method: 'PUT', path: '/', headers: { host: 'api.example.org' } }), expect: { status: 200 } },
  { name: 'a path template {*} matches one segment', cite: `${AUTHZ}/model/generator.go pathGenerator (ContainsPathTemplate → uri_template)`, set: 'hosts-methods', request: () => ({ method: 'GET', path: '/items/42/detail', headers: { host: 'other.test' } }), expect: { status: 200 } },
  { name: 'a path template {*} does not span segments', cite: `${AUTHZ}/model/generator.go pathGenerator`, set: 'hosts-methods', request: () => ({ method: 'GET', path: '/items/4/2/detail', headers: { host: 'other.test' } }), expect: { status: 403, body: 'RBAC: access denied' } },

  // ---- JWKS --------------------------------------------------------------------------------------------------------------
  { name: 'a JWKS supplied for the jwksUri verifies the token', cite: `${AUTHN} (remote jwks / BuildLocalJwks)`, set: 'jwks-supplied', request: async (c) => get('/api', bearer(await c.token('servicea'))), expect: { status: 200, principal: A } },
  { name: 'an unfetchable jwksUri makes a kid token fail verification (the fallback JWKS has no kid)', cite: 'istio/istio pilot/pkg/model/jwks_resolver.go BuildLocalJwks (PublicOnlyJwks, before it FakeJwks: no kid); google/jwt_verify_lib src/verify.cc', set: 'jwks-unfetchable', request: async (c) => get('/api', bearer(await c.token('servicea'))), expect: { ...refused('Jwt verification fails'), step: 'public-only JWKS' } },
  { name: 'an unfetchable jwksUri makes a kid-less token fail verification', cite: 'istio/istio pilot/pkg/model/jwks_resolver.go CreateFakeJwks; google/jwt_verify_lib src/verify.cc', set: 'jwks-unfetchable', request: async (c) => get('/api', bearer(await c.token('servicea', {}, { header: { alg: 'RS256' } }))), expect: refused('Jwt verification fails') },
  { name: 'an unfetchable jwksUri still lets requests without token through', cite: `${AUTHN} (allow_missing)`, set: 'jwks-unfetchable', request: () => get('/api'), expect: { status: 200 } },
  { name: 'a JWKS with a broken key has no valid key at all', cite: `${LIB}/jwks.cc createFromJwksCore (first bad key → status) ; ${ENVOY}/authenticator.cc (JwksNoValidKeys)`, set: 'jwks-invalid', request: async (c) => get('/api', bearer(await c.token('servicea'))), expect: { ...refused("Jwks doesn't have any valid public key"), step: '[e] field is missing for a RSA key' } },

  // ---- CUSTOM ------------------------------------------------------------------------------------------------------------
  { name: 'a CUSTOM policy hands matching requests to its provider (assumed to allow)', cite: `${AUTHZ}/builder/builder.go BuildHTTP (CUSTOM → RBAC shadow + ext_authz)`, set: 'custom', request: () => get('/ext/x'), expect: { status: 200, step: 'external authorizer "opa"' } },
  { name: 'CUSTOM policies naming two providers: istiod turns their rules into DENY rules, so a matching path is denied', cite: `${AUTHZ}/builder/builder.go buildHTTP (getExtAuthz error → getBadCustomDenyRules)`, set: 'custom-two-providers', request: () => get('/a'), expect: { status: 403, body: 'RBAC: access denied', decidedBy: 'several providers' } },
  { name: 'a dry-run CUSTOM policy denies what it matches: istiod puts dry-run CUSTOM rules in the RBAC filter\'s enforced DENY rules', cite: `${AUTHZ}/builder/builder.go buildHTTP (providerShadowRules → rbac.Rules, "limitation")`, set: 'custom-dry-run', request: () => get('/dry/x'), expect: { status: 403, body: 'RBAC: access denied', decidedBy: 'dry-run' } },
  { name: 'a dry-run CUSTOM policy lets through what it does not match, and no provider is asked', cite: `${AUTHZ}/builder/builder.go buildHTTP; generateFilterMatcherForProvider (no shadow policy id, no ext_authz)`, set: 'custom-dry-run', request: () => get('/other'), expect: { status: 200 } },
  { name: 'CUSTOM policies naming two providers deny nothing their rules do not match', cite: `${AUTHZ}/builder/builder.go getBadCustomDenyRules (only the CUSTOM rules, as DENY)`, set: 'custom-two-providers', request: () => get('/elsewhere'), expect: { status: 200 } },
  { name: 'CUSTOM at the edge: a page of the webui host is handed to oauth2-proxy first', cite: `${AUTHZ}/builder/builder.go BuildHTTP (ext_authz before jwt_authn and RBAC); istio.io docs "External Authorization" (oauth2-proxy)`, set: 'custom-edge', request: () => get('/', { host: 'webui.example' }), expect: { status: 200, step: 'external authorizer "oauth2-proxy"' } },
  { name: 'CUSTOM at the edge: the user token oauth2-proxy set is then verified, and the rule sees the user', cite: `${AUTHZ}/builder/builder.go BuildHTTP; oauth2-proxy docs "--set-authorization-header"; ${ENVOY}/authenticator.cc`, set: 'custom-edge', request: async (c) => get('/api/me', { host: 'webui.example', ...bearer(await c.token('alice')) }), expect: { status: 200, principal: `${ISS}/alice`, step: 'external authorizer "oauth2-proxy"' } },
  { name: 'CUSTOM at the edge: an API call let through without a user token still meets requestPrincipals (403)', cite: `${AUTHZ}/builder/builder.go BuildHTTP (RBAC after ext_authz)`, set: 'custom-edge', request: () => get('/api/me', { host: 'webui.example' }), expect: { status: 403, body: 'RBAC: access denied' } },
  { name: 'CUSTOM at the edge: oauth2-proxy\'s own /oauth2/ routes are not sent to it', cite: `${AUTHZ}/builder/builder.go BuildHTTP; oauth2-proxy docs "Endpoints" (/oauth2/callback)`, set: 'custom-edge', request: () => get('/oauth2/callback', { host: 'webui.example' }), expect: { status: 200, principal: null, step: 'CUSTOM ns[jwt-suite]-policy[oauth2-proxy-at-edge]-rule[0]: does not match' } },

  // ---- OIDC provider users: tokens as jwt-factory/oidc issues them (RFC 9068 access tokens, OIDC Core id tokens) ----------
  { name: 'a user access token (typ at+jwt) is accepted and its principal is <iss>/<the user>', cite: `${AUTHZ}/model/generator.go requestPrincipalGenerator; RFC 9068 §2.2 (sub is the user)`, set: 'oidc-users', request: async (c) => get('/scenario5-server', bearer(await userAccess(c))), expect: { status: 200, principal: U, headerPrefixes: { authorization: 'Bearer ' } } },
  { name: 'typ at+jwt is not checked by Envoy: an access token and an id token differ to the mesh by their claims only', cite: `${LIB}/jwt.cc parseFromString (typ is not read); RFC 9068 §4 (the resource server checks typ)`, set: 'oidc-users', request: async (c) => get('/scenario6-server', bearer(await userId(c, { header: { typ: 'at+jwt' } }))), expect: { status: 200, principal: U } },
  { name: "the user's id token (aud the client) is refused where the access token's audience is required", cite: `${AUTHZ}/model/generator.go requestAudiencesGenerator; OIDC Core §2 (id token aud = client_id)`, set: 'oidc-users', request: async (c) => get('/scenario5-server', bearer(await userId(c))), expect: { status: 403, body: 'RBAC: access denied', principal: U } },
  { name: "the user's id token passes the route that requires an id token for cli", cite: `${AUTHZ}/model/generator.go requestAudiencesGenerator`, set: 'oidc-users', request: async (c) => get('/scenario6-server', bearer(await userId(c))), expect: { status: 200, principal: U } },
  { name: "the user's access token is refused on the id token's route", cite: `${AUTHZ}/model/generator.go requestAudiencesGenerator`, set: 'oidc-users', request: async (c) => get('/scenario6-server', bearer(await userAccess(c))), expect: { status: 403, body: 'RBAC: access denied', principal: U } },
  { name: 'a user access token without the profile scope is refused (scope is split on spaces)', cite: `${AUTHN} buildSpaceDelimitedClaims (scope)`, set: 'oidc-users', request: async (c) => get('/scenario5-server', bearer(await userAccess(c, { scope: 'openid email' }))), expect: { status: 403, body: 'RBAC: access denied', principal: U } },
  { name: 'a user token for another audience is 403 "Audiences in Jwt are not allowed"', cite: `${ENVOY}/authenticator.cc (JwtAudienceNotAllowed → 403)`, set: 'oidc-users', request: async (c) => get('/scenario5-server', bearer(await userAccess(c, { aud: 'servicec' }))), expect: { status: 403, body: 'Audiences in Jwt are not allowed', principal: null } },
  { name: "a user token where only the service's principal is allowed is refused", cite: `${AUTHZ}/model/generator.go requestPrincipalGenerator (exact <iss>/<sub>)`, set: 'oidc-users', request: async (c) => get('/service/data', bearer(await userAccess(c))), expect: { status: 403, body: 'RBAC: access denied', principal: U } },
  { name: 'a token of the provider whose sub is "servicea" passes as servicea: the principal is <iss>/<sub>, whichever key of the rule signed', cite: `${AUTHN} (one jwtRule per issuer: every key of its JWKS stands for every sub); ${AUTHZ}/model/generator.go requestPrincipalGenerator`, set: 'oidc-users', request: async (c) => get('/service/data', bearer(await userAccess(c, { sub: 'servicea' }))), expect: { status: 200, principal: A } },
  { name: 'an exchanged token (sub the user, act.sub servicea) passes the delegation route', cite: `${AUTHZ}/model/util.go extractNameInNestedBrackets (claims[act][sub]); RFC 8693 §4.1`, set: 'oidc-users', request: async (c) => get('/scenario7-server', bearer(await userAccess(c, { act: { sub: 'servicea' } }))), expect: { status: 200, principal: U } },
  { name: 'a user token without act is refused on the delegation route', cite: `${AUTHZ}/model/util.go extractNameInNestedBrackets (absent claim → no match)`, set: 'oidc-users', request: async (c) => get('/scenario7-server', bearer(await userAccess(c))), expect: { status: 403, body: 'RBAC: access denied', principal: U } },
  { name: 'an exchanged token naming another actor is refused on the delegation route', cite: `${AUTHZ}/model/util.go extractNameInNestedBrackets`, set: 'oidc-users', request: async (c) => get('/scenario7-server', bearer(await userAccess(c, { act: { sub: 'servicec' } }))), expect: { status: 403, body: 'RBAC: access denied', principal: U } },
  { name: 'a request without a token is refused on a user route (no request principal)', cite: `${AUTHN} (allow_missing); ${AUTHZ}/builder/builder.go`, set: 'oidc-users', request: () => get('/scenario5-server'), expect: { status: 403, body: 'RBAC: access denied', principal: null } },
];
