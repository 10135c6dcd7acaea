import { compactVerify, importJWK, type JWK } from 'jose';
import type { JwtRuleSpec } from './policies.js';

/**
 * Envoy's jwt_authn filter as istiod configures it, step by step, with google/jwt_verify_lib's
 * checks and status strings. Pure apart from jose's signature check: token locations, parsing,
 * issuer, time, audiences, key selection by kid and alg, then the header outputs.
 *
 * Sources (read, not guessed):
 * - envoyproxy/envoy source/extensions/filters/http/jwt_authn/extractor.cc (locations),
 *   authenticator.cc (order of checks, multiple tokens), verifier.cc (requires_any/all,
 *   allow_missing), filter.cc (401/403, www-authenticate, CORS preflight).
 * - google/jwt_verify_lib src/jwt.cc (parse), src/verify.cc (kid/alg), src/jwks.cc,
 *   src/status.cc (strings), src/struct_utils.cc; Envoy's copy source/common/jwt/check_audience.cc.
 * - istio/istio pilot/pkg/security/authn/policy_applier.go convertToEnvoyJwtConfig (providers
 *   sorted by issuer, "origins-N", the requirement tree, bypass_cors_preflight).
 */

/** jwt_verify_lib Status values this engine can produce, with their exact strings (src/status.cc). */
export const STATUS = {
  Ok: 'OK',
  JwtMissed: 'Jwt is missing',
  JwtNotYetValid: 'Jwt not yet valid',
  JwtExpired: 'Jwt is expired',
  JwtBadFormat: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
  JwtHeaderParseErrorBadBase64: 'Jwt header is an invalid Base64url encoded',
  JwtHeaderParseErrorBadJson: 'Jwt header is an invalid JSON',
  JwtHeaderBadAlg: 'Jwt header [alg] field is required and must be a string',
  JwtHeaderNotImplementedAlg: 'Jwt header [alg] is not supported',
  JwtHeaderBadKid: 'Jwt header [kid] field is not a string',
  JwtPayloadParseErrorBadBase64: 'Jwt payload is an invalid Base64url encoded',
  JwtPayloadParseErrorBadJson: 'Jwt payload is an invalid JSON',
  JwtPayloadParseErrorIssNotString: 'Jwt payload [iss] field is not a string',
  JwtPayloadParseErrorSubNotString: 'Jwt payload [sub] field is not a string',
  JwtPayloadParseErrorIatNotInteger: 'Jwt payload [iat] field is not an integer',
  JwtPayloadParseErrorIatOutOfRange: 'Jwt payload [iat] field is not a positive 64 bit integer',
  JwtPayloadParseErrorNbfNotInteger: 'Jwt payload [nbf] field is not an integer',
  JwtPayloadParseErrorNbfOutOfRange: 'Jwt payload [nbf] field is not a positive 64 bit integer',
  JwtPayloadParseErrorExpNotInteger: 'Jwt payload [exp] field is not an integer',
  JwtPayloadParseErrorExpOutOfRange: 'Jwt payload [exp] field is not a positive 64 bit integer',
  JwtPayloadParseErrorJtiNotString: 'Jwt payload [jti] field is not a string',
  JwtPayloadParseErrorAudNotString: 'Jwt payload [aud] field is not a string or string list',
  JwtSignatureParseErrorBadBase64: 'Jwt signature is an invalid Base64url encoded',
  JwtEd25519SignatureWrongLength: 'Jwt ED25519 signature is wrong length',
  JwtUnknownIssuer: 'Jwt issuer is not configured',
  JwtAudienceNotAllowed: 'Audiences in Jwt are not allowed',
  JwtVerificationFail: 'Jwt verification fails',
  JwksNoValidKeys: "Jwks doesn't have any valid public key",
  JwksKidAlgMismatch: "Jwks doesn't have key to match kid or alg from Jwt",
} as const;

export type Status = keyof typeof STATUS;

/** Envoy's default clock skew, `kClockSkewInSecond` (RequestAuthentication has no setting for it). */
export const CLOCK_SKEW_SECONDS = 60;

export type { HeaderMap } from './envoy/headers.js';
import type { HeaderMap } from './envoy/headers.js';

/** A parsed token, as jwt_verify_lib's Jwt class holds it. */
export interface ParsedJwt {
  alg: string;
  kid: string;
  iss: string;
  sub: string;
  nbf: number;
  exp: number;
  audiences: string[];
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  headerB64: string;
  payloadB64: string;
  signatureB64: string;
}

const IMPLEMENTED_ALGS = new Set(['ES256', 'ES384', 'ES512', 'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA']);

/** absl::WebSafeBase64Unescape: url-safe alphabet, optional "=" padding, no stray characters. */
function webSafeBase64Unescape(s: string): Buffer | undefined {
  const m = /^([A-Za-z0-9_-]*)(={0,2})$/.exec(s);
  if (!m) return undefined;
  const body = m[1]!;
  if (body.length % 4 === 1) return undefined;
  if (m[2]!.length > 0 && (body.length + m[2]!.length) % 4 !== 0) return undefined;
  return Buffer.from(body, 'base64url');
}

/** protobuf JsonStringToMessage into a Struct: only a JSON object is accepted. */
function parseStruct(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** StructUtils::GetUInt64: a JSON number, 0 <= n < 2^64, truncated towards zero. */
function readUInt64(payload: Record<string, unknown>, name: string): 'missing' | 'wrong_type' | 'out_of_range' | number {
  if (!(name in payload)) return 'missing';
  const v = payload[name];
  if (typeof v !== 'number') return 'wrong_type';
  if (v < 0 || v >= 2 ** 64) return 'out_of_range';
  return Math.trunc(v);
}

/** Jwt::parseFromString (jwt_verify_lib src/jwt.cc): same checks, same order, same statuses. */
export function parseJwt(token: string): { ok: true; jwt: ParsedJwt } | { ok: false; status: Status } {
  const fail = (status: Status) => ({ ok: false as const, status });
  if ((token.match(/\./g) ?? []).length !== 2) return fail('JwtBadFormat');
  const parts = token.split('.').filter((p) => p.length > 0); // absl::SkipEmpty
  if (parts.length !== 3) return fail('JwtBadFormat');
  const [headerB64, payloadB64, signatureB64] = parts as [string, string, string];
  const headerBytes = webSafeBase64Unescape(headerB64);
  if (!headerBytes) return fail('JwtHeaderParseErrorBadBase64');
  const header = parseStruct(headerBytes);
  if (!header) return fail('JwtHeaderParseErrorBadJson');
  if (typeof header.alg !== 'string') return fail('JwtHeaderBadAlg');
  if (!IMPLEMENTED_ALGS.has(header.alg)) return fail('JwtHeaderNotImplementedAlg');
  if ('kid' in header && typeof header.kid !== 'string') return fail('JwtHeaderBadKid');
  const payloadBytes = webSafeBase64Unescape(payloadB64);
  if (!payloadBytes) return fail('JwtPayloadParseErrorBadBase64');
  const payload = parseStruct(payloadBytes);
  if (!payload) return fail('JwtPayloadParseErrorBadJson');
  if ('iss' in payload && typeof payload.iss !== 'string') return fail('JwtPayloadParseErrorIssNotString');
  if ('sub' in payload && typeof payload.sub !== 'string') return fail('JwtPayloadParseErrorSubNotString');
  const times: Record<'iat' | 'nbf' | 'exp', number> = { iat: 0, nbf: 0, exp: 0 };
  for (const name of ['iat', 'nbf', 'exp'] as const) {
    const v = readUInt64(payload, name);
    const cap = (name[0]!.toUpperCase() + name.slice(1)) as 'Iat' | 'Nbf' | 'Exp';
    if (v === 'wrong_type') return fail(`JwtPayloadParseError${cap}NotInteger`);
    if (v === 'out_of_range') return fail(`JwtPayloadParseError${cap}OutOfRange`);
    if (typeof v === 'number') times[name] = v;
  }
  if ('jti' in payload && typeof payload.jti !== 'string') return fail('JwtPayloadParseErrorJtiNotString');
  let audiences: string[] = [];
  if ('aud' in payload) {
    const aud = payload.aud;
    if (typeof aud === 'string') audiences = [aud];
    else if (Array.isArray(aud) && aud.every((a) => typeof a === 'string')) audiences = aud as string[];
    else return fail('JwtPayloadParseErrorAudNotString');
  }
  if (!webSafeBase64Unescape(signatureB64)) return fail('JwtSignatureParseErrorBadBase64');
  return {
    ok: true,
    jwt: {
      alg: header.alg,
      kid: typeof header.kid === 'string' ? header.kid : '',
      iss: typeof payload.iss === 'string' ? payload.iss : '',
      sub: typeof payload.sub === 'string' ? payload.sub : '',
      nbf: times.nbf,
      exp: times.exp,
      audiences,
      header,
      payload,
      headerB64,
      payloadB64,
      signatureB64,
    },
  };
}

/** Jwt::verifyTimeConstraint, with a sentence saying how far off the token is. */
export function checkTime(jwt: ParsedJwt, nowSeconds: number, skew = CLOCK_SKEW_SECONDS): { status: Status; why: string } {
  if (nowSeconds + skew < jwt.nbf) {
    return { status: 'JwtNotYetValid', why: `nbf is ${jwt.nbf - nowSeconds} s in the future; Envoy allows ${skew} s of skew` };
  }
  // exp 0 (or absent) means "no expiry" to jwt_verify_lib: such a token never expires.
  if (jwt.exp && nowSeconds > jwt.exp + skew) {
    return { status: 'JwtExpired', why: `exp is ${nowSeconds - jwt.exp} s in the past; Envoy allows ${skew} s of skew` };
  }
  const expiry = !jwt.exp
    ? 'the token has no exp, so it never expires for Envoy'
    : jwt.exp >= nowSeconds
      ? `exp is in ${jwt.exp - nowSeconds} s`
      : `exp is ${nowSeconds - jwt.exp} s in the past, within Envoy's ${skew} s of skew`;
  const notBefore = jwt.nbf > nowSeconds ? `; nbf is ${jwt.nbf - nowSeconds} s ahead, within the ${skew} s of skew` : '';
  return { status: 'Ok', why: expiry + notBefore };
}

/** CheckAudience's normalisation: drop an http:// or https:// prefix and one trailing slash. */
export function sanitizeAudience(aud: string): string {
  if (aud === '') return aud;
  let out = aud;
  if (out.startsWith('http://')) out = out.slice(7);
  else if (out.startsWith('https://')) out = out.slice(8);
  if (aud.endsWith('/')) out = out.slice(0, -1);
  return out;
}

/** CheckAudience::areAudiencesAllowed: no configured audience means no check at all. */
export function areAudiencesAllowed(configured: readonly string[], tokenAudiences: readonly string[]): boolean {
  if (configured.length === 0) return true;
  const allowed = new Set(configured.map(sanitizeAudience));
  return tokenAudiences.some((a) => allowed.has(sanitizeAudience(a)));
}

/** A JWKS as Envoy loaded it: its keys, or why it has none usable. */
export interface LoadedJwks {
  keys: JWK[];
  /** Set when Envoy rejects the whole JWKS (a bad key makes `Jwks::getStatus()` fail). */
  invalid?: string;
  /** True when istiod could not fetch the jwksUri and inlined its fallback JWKS. */
  fake?: boolean;
}

/** Jwks::createFromJwksCore + extractJwk (src/jwks.cc): the first bad key makes the whole set invalid. */
export function loadJwks(input: unknown): LoadedJwks {
  let doc: unknown = input;
  if (typeof input === 'string') {
    try {
      doc = JSON.parse(input);
    } catch {
      return { keys: [], invalid: 'Jwks is an invalid JSON' };
    }
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return { keys: [], invalid: 'Jwks is an invalid JSON' };
  const keysField = (doc as Record<string, unknown>).keys;
  if (keysField === undefined) return { keys: [], invalid: 'Jwks does not have [keys] field' };
  if (!Array.isArray(keysField)) return { keys: [], invalid: '[keys] in Jwks is not an array' };
  const keys: JWK[] = [];
  for (const raw of keysField) {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) continue;
    const problem = jwkProblem(raw as Record<string, unknown>);
    if (problem) return { keys: [], invalid: problem };
    keys.push(raw as JWK);
  }
  if (keys.length === 0) return { keys: [], invalid: "Jwks doesn't have any valid public key" };
  return { keys };
}

/** extractJwk's per-kty checks; undefined when the key is acceptable. */
function jwkProblem(k: Record<string, unknown>): string | undefined {
  if (!('kty' in k)) return '[kty] is missing in [keys]';
  if (typeof k.kty !== 'string') return '[kty] is bad in [keys]';
  const alg = typeof k.alg === 'string' ? k.alg : undefined;
  const str = (f: string) => typeof k[f] === 'string';
  switch (k.kty) {
    case 'RSA':
      if (alg !== undefined && !(alg.startsWith('RS') || alg.startsWith('PS'))) return '[alg] is not started with [RS] or [PS] for an RSA key';
      if (!('n' in k)) return '[n] field is missing for a RSA key';
      if (!str('n')) return '[n] field is not string for a RSA key';
      if (!('e' in k)) return '[e] field is missing for a RSA key';
      if (!str('e')) return '[e] field is not string for a RSA key';
      return undefined;
    case 'EC': {
      if (alg !== undefined && !alg.startsWith('ES')) return '[alg] is not started with [ES] for an EC key';
      if ('crv' in k && !str('crv')) return '[crv] field is not string for an EC key';
      const crv = k.crv as string | undefined;
      const pairs: Record<string, string> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };
      if (alg !== undefined && crv && pairs[alg] !== crv) return '[crv] field specified is not compatible with [alg] for an EC key';
      if (!(alg && pairs[alg]) && crv && !Object.values(pairs).includes(crv)) return '[crv] or [alg] field is not supported for an EC key';
      if (!('x' in k)) return '[x] field is missing for an EC key';
      if (!str('x')) return '[x] field is not string for an EC key';
      if (!('y' in k)) return '[y] field is missing for an EC key';
      if (!str('y')) return '[y] field is not string for an EC key';
      return undefined;
    }
    case 'oct':
      if (alg !== undefined && !['HS256', 'HS384', 'HS512'].includes(alg)) return '[alg] does not start with [HS] for an HMAC key';
      if (!('k' in k)) return '[k] field is missing for an HMAC key';
      if (!str('k')) return '[k] field is not string for an HMAC key';
      return undefined;
    case 'OKP':
      if (alg !== undefined && alg !== 'EdDSA') return '[alg] is not [EdDSA] for an OKP key';
      if (!('crv' in k)) return '[crv] field is missing for an OKP key';
      if (k.crv !== 'Ed25519') return '[crv] field is not supported for an OKP key';
      if (!str('x')) return '[x] field is missing for an OKP key';
      return undefined;
    default:
      return '[kty] is not supported in [keys]';
  }
}

/** Which key families can check which algs (verify.cc picks the routine by the JWK's kty). */
function ktyFits(kty: unknown, alg: string): boolean {
  if (kty === 'EC') return alg.startsWith('ES');
  if (kty === 'RSA') return alg.startsWith('RS') || alg.startsWith('PS');
  if (kty === 'oct') return alg.startsWith('HS');
  if (kty === 'OKP') return alg === 'EdDSA';
  return false;
}

/**
 * verifyJwtWithoutTimeChecking (src/verify.cc): a JWK is a candidate unless both it and the token
 * name a kid and they differ, or it names an alg other than the token's. No candidate at all is
 * "Jwks doesn't have key to match kid or alg from Jwt"; candidates that all fail are
 * "Jwt verification fails". The signature itself is checked by jose with the key pinned.
 */
export async function verifySignature(jwt: ParsedJwt, jwks: LoadedJwks): Promise<{ status: Status; kid?: string; tried: number }> {
  let matched = false;
  let tried = 0;
  const compact = `${jwt.headerB64}.${jwt.payloadB64}.${jwt.signatureB64}`;
  for (const jwk of jwks.keys) {
    const kid = typeof jwk.kid === 'string' ? jwk.kid : '';
    if (jwt.kid && kid && kid !== jwt.kid) continue;
    if (jwk.alg && jwk.alg !== jwt.alg) continue;
    matched = true;
    if (!ktyFits(jwk.kty, jwt.alg)) continue;
    tried += 1;
    try {
      const { alg: _alg, use: _use, key_ops: _ops, ext: _ext, ...material } = jwk;
      const key = await importJWK(material, jwt.alg);
      await compactVerify(compact, key, { algorithms: [jwt.alg] });
      return { status: 'Ok', kid: kid || undefined, tried };
    } catch {
      // A key that cannot be imported for this alg, or a signature that does not match: next key.
    }
  }
  return { status: matched ? 'JwtVerificationFail' : 'JwksKidAlgMismatch', tried };
}

/** Where a token was found; header and query locations can be cleared, cookies cannot. */
export type TokenLocation =
  | { kind: 'header'; name: string; prefix: string }
  | { kind: 'param'; name: string }
  | { kind: 'cookie'; name: string };

export interface ExtractedToken {
  token: string;
  location: TokenLocation;
  /** Issuers whose providers name this location; undefined means any issuer (a provider without issuer). */
  issuers: Set<string> | undefined;
}

/** A location in words, for the explanation. */
export function describeLocation(l: TokenLocation): string {
  if (l.kind === 'header') return l.prefix ? `header ${l.name} (prefix "${l.prefix}")` : `header ${l.name}`;
  return l.kind === 'param' ? `query parameter ${l.name}` : `cookie ${l.name}`;
}

/** One Envoy JwtProvider as istiod writes it for a jwtRule. */
export interface Provider {
  /** "origins-N" after sorting every rule of the workload by issuer. */
  name: string;
  rule: JwtRuleSpec;
  /** "namespace/name" of the RequestAuthentication it came from. */
  policy: string;
  jwks: LoadedJwks;
}

interface LocationSpec {
  headers: { name: string; prefix: string }[];
  params: string[];
  cookies: string[];
}

/** ExtractorImpl::addProvider: explicit locations, else Authorization "Bearer " and access_token. */
function locationsOf(rule: JwtRuleSpec): LocationSpec {
  const headers = (rule.fromHeaders ?? []).map((h) => ({ name: h.name.toLowerCase(), prefix: h.prefix ?? '' }));
  const params = rule.fromParams ?? [];
  const cookies = rule.fromCookies ?? [];
  if (headers.length === 0 && params.length === 0 && cookies.length === 0) {
    return { headers: [{ name: 'authorization', prefix: 'Bearer ' }], params: ['access_token'], cookies: [] };
  }
  return { headers, params, cookies };
}

const JWT_CHARS = /[A-Za-z0-9_.-]/;

/** ExtractorImpl::extractJWT: skip to the first base64url-or-dot character after the prefix. */
function afterPrefix(value: string, after: number): string {
  for (let i = after; i < value.length; i++) if (JWT_CHARS.test(value[i]!)) return value.slice(i);
  return value;
}

/** The request as the extractor and authorizer see it (mutable: jwt_authn edits headers and path). */
export interface RequestState {
  headers: HeaderMap;
  /** :path with its query string. */
  path: string;
  cookies: Map<string, string>;
}

function queryOf(path: string): URLSearchParams {
  const q = path.indexOf('?');
  return new URLSearchParams(q >= 0 ? path.slice(q + 1) : '');
}

/**
 * ExtractorImpl::extract for a set of providers: header locations in std::map order (name+prefix),
 * every value of each header; then query parameters (first value); then cookies.
 */
export function extractTokens(providers: readonly Provider[], req: RequestState): ExtractedToken[] {
  const add = (map: Map<string, Set<string> | undefined>, key: string, issuer: string | undefined) => {
    if (map.has(key) && map.get(key) === undefined) return;
    if (!issuer) map.set(key, undefined);
    else map.set(key, new Set([...(map.get(key) ?? []), issuer]));
  };
  const headerSpecs = new Map<string, { name: string; prefix: string }>();
  const headerIssuers = new Map<string, Set<string> | undefined>();
  const paramIssuers = new Map<string, Set<string> | undefined>();
  const cookieIssuers = new Map<string, Set<string> | undefined>();
  for (const p of providers) {
    const loc = locationsOf(p.rule);
    for (const h of loc.headers) {
      headerSpecs.set(h.name + h.prefix, h);
      add(headerIssuers, h.name + h.prefix, p.rule.issuer);
    }
    for (const name of loc.params) add(paramIssuers, name, p.rule.issuer);
    for (const name of loc.cookies) add(cookieIssuers, name, p.rule.issuer);
  }
  const byteOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const tokens: ExtractedToken[] = [];
  for (const key of [...headerSpecs.keys()].sort(byteOrder)) {
    const spec = headerSpecs.get(key)!;
    for (const raw of req.headers.get(spec.name) ?? []) {
      let value = raw;
      if (spec.prefix) {
        // Envoy looks for the prefix anywhere in the value, and skips a value without it.
        const pos = value.indexOf(spec.prefix);
        if (pos < 0) continue;
        value = afterPrefix(value, pos + spec.prefix.length);
      }
      tokens.push({ token: value, location: { kind: 'header', ...spec }, issuers: headerIssuers.get(key) });
    }
  }
  if (paramIssuers.size > 0) {
    const params = queryOf(req.path);
    for (const name of [...paramIssuers.keys()].sort(byteOrder)) {
      const v = params.get(name);
      if (v !== null) tokens.push({ token: v, location: { kind: 'param', name }, issuers: paramIssuers.get(name) });
    }
  }
  for (const name of [...cookieIssuers.keys()].sort(byteOrder)) {
    const v = req.cookies.get(name);
    if (v !== undefined) tokens.push({ token: v, location: { kind: 'cookie', name }, issuers: cookieIssuers.get(name) });
  }
  return tokens;
}

/** JwtLocation::removeJwt: the whole header, or the one query parameter; cookies stay (Envoy TODO). */
function removeToken(t: ExtractedToken, req: RequestState): string {
  if (t.location.kind === 'header') {
    req.headers.delete(t.location.name);
    return `removed header ${t.location.name} before forwarding (forwardOriginalToken is not set)`;
  }
  if (t.location.kind === 'param') {
    const q = req.path.indexOf('?');
    const params = queryOf(req.path);
    params.delete(t.location.name);
    const rest = params.toString();
    req.path = (q >= 0 ? req.path.slice(0, q) : req.path) + (rest ? `?${rest}` : '');
    return `removed query parameter ${t.location.name} before forwarding (forwardOriginalToken is not set)`;
  }
  return `left cookie ${t.location.name} in place: Envoy never removes a token from a cookie, even without forwardOriginalToken`;
}

/**
 * addJWTClaimToHeader: strings as they are, bools as true/false, whole non-negative numbers as
 * integers and others as std::to_string; lists and objects as base64 of their JSON where the
 * release's Envoy does so (RELEASE_BEHAVIOURS.claimToHeadersJson), else no header.
 */
function claimToString(v: unknown, json: boolean): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return v >= 0 && Number.isInteger(v) && v < 2 ** 64 ? BigInt(v).toString() : v.toFixed(6);
  if (json && v !== null && typeof v === 'object') return Buffer.from(JSON.stringify(v)).toString('base64');
  return undefined;
}

/** StructUtils::GetValue: "a.b" walks nested objects. */
export function nestedClaim(payload: Record<string, unknown>, dotted: string): unknown {
  let cur: unknown = payload;
  for (const part of dotted.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !(part in (cur as object))) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function appendHeader(headers: HeaderMap, name: string, value: string): void {
  const key = name.toLowerCase();
  headers.set(key, [...(headers.get(key) ?? []), value]);
}

/** Shared state of one request's jwt_authn run. */
export interface JwtContext {
  req: RequestState;
  nowSeconds: number;
  steps: string[];
  /** The metadata "payload" key: the last successful provider overwrites it (ContextImpl::addExtractedData). */
  payload?: Record<string, unknown>;
  payloadProvider?: Provider;
  /** The release's Envoy sends list and object claims to headers as base64 JSON. */
  claimJson?: boolean;
}

/** ExtractorImpl::sanitizeHeaders: a client cannot smuggle the headers this provider will write. */
function sanitize(p: Provider, req: RequestState): void {
  if (p.rule.outputPayloadToHeader) req.headers.delete(p.rule.outputPayloadToHeader.toLowerCase());
  for (const c of p.rule.outputClaimToHeaders ?? []) req.headers.delete(c.header.toLowerCase());
}

/**
 * ProviderVerifierImpl + AuthenticatorImpl for one provider: the provider's locations are
 * extracted; tokens are checked last-found first; every token must pass, the first failure ends it.
 */
async function verifyProvider(p: Provider, ctx: JwtContext): Promise<Status> {
  sanitize(p, ctx.req);
  const tokens = extractTokens([p], ctx.req);
  const label = `${p.name} (issuer ${p.rule.issuer ?? '(any)'}, from ${p.policy})`;
  if (tokens.length === 0) {
    ctx.steps.push(`${label}: no token at its locations (${describeLocations(p.rule)})`);
    return 'JwtMissed';
  }
  while (tokens.length > 0) {
    const t = tokens.pop()!;
    const where = describeLocation(t.location);
    const status = await verifyOne(p, t, ctx, `${label}: token in ${where}`);
    if (status !== 'Ok') return status;
  }
  return 'Ok';
}

function describeLocations(rule: JwtRuleSpec): string {
  const loc = locationsOf(rule);
  return [
    ...loc.headers.map((h) => describeLocation({ kind: 'header', ...h })),
    ...loc.params.map((n) => `query parameter ${n}`),
    ...loc.cookies.map((n) => `cookie ${n}`),
  ].join(', ');
}

/** AuthenticatorImpl::startVerify → verifyKey → handleGoodJwt for one token. */
async function verifyOne(p: Provider, t: ExtractedToken, ctx: JwtContext, label: string): Promise<Status> {
  const fail = (status: Status, why: string): Status => {
    ctx.steps.push(`${label}: ${why} → "${STATUS[status]}"`);
    return status;
  };
  const parsed = parseJwt(t.token);
  if (!parsed.ok) return fail(parsed.status, 'the token cannot be parsed');
  const jwt = parsed.jwt;
  if (t.issuers && !t.issuers.has(jwt.iss)) {
    return fail('JwtUnknownIssuer', `iss "${jwt.iss}" is not the issuer configured for this location (${[...t.issuers].join(', ')})`);
  }
  const time = checkTime(jwt, ctx.nowSeconds);
  if (time.status !== 'Ok') return fail(time.status, time.why);
  const configured = p.rule.audiences ?? [];
  if (!areAudiencesAllowed(configured, jwt.audiences)) {
    const got = jwt.audiences.length ? jwt.audiences.map((a) => `"${a}"`).join(', ') : 'none';
    return fail('JwtAudienceNotAllowed', `aud ${got} matches none of [${configured.join(', ')}] (compared without http(s):// and a trailing slash)`);
  }
  if (p.jwks.invalid) return fail('JwksNoValidKeys', `the rule's JWKS is unusable (${p.jwks.invalid})`);
  const sig = await verifySignature(jwt, p.jwks);
  if (sig.status !== 'Ok') {
    const fake = p.jwks.fake ? '; istiod could not fetch the jwksUri, so the sidecar holds its fallback JWKS (one RSA key nobody can sign for)' : '';
    const kids = p.jwks.keys.map((k) => `${k.kid ?? '(no kid)'}/${k.alg ?? '(any alg)'}`).join(', ');
    const why =
      sig.status === 'JwksKidAlgMismatch'
        ? `no JWKS key matches kid "${jwt.kid || '(none)'}" and alg ${jwt.alg} (keys: ${kids})${fake}`
        : `${sig.tried === 0 ? 'no key of a type that can check' : 'no key verifies the signature of'} this ${jwt.alg} token (kid "${jwt.kid || '(none)'}"; keys: ${kids})${fake}`;
    return fail(sig.status, why);
  }
  const audText = configured.length ? `aud accepted by [${configured.join(', ')}]` : 'no audiences configured, so aud is not checked';
  ctx.steps.push(`${label}: valid — iss "${jwt.iss}", ${time.why}, ${audText}, signature checked with key ${sig.kid ? `kid "${sig.kid}"` : '(no kid)'} (${jwt.alg})`);
  // handleGoodJwt: payload header, claim headers, token removal, metadata.
  if (p.rule.outputPayloadToHeader) {
    appendHeader(ctx.req.headers, p.rule.outputPayloadToHeader, jwt.payloadB64);
    ctx.steps.push(`${label}: added header ${p.rule.outputPayloadToHeader.toLowerCase()} with the base64url payload (outputPayloadToHeader)`);
  }
  for (const c of p.rule.outputClaimToHeaders ?? []) {
    const value = claimToString(nestedClaim(jwt.payload, c.claim), ctx.claimJson === true);
    if (value) {
      appendHeader(ctx.req.headers, c.header, value);
      ctx.steps.push(`${label}: added header ${c.header.toLowerCase()}: ${value} from claim ${c.claim} (outputClaimToHeaders)`);
    } else {
      ctx.steps.push(`${label}: claim ${c.claim} is missing, empty or ${ctx.claimJson ? 'null' : 'not a string/number/bool'}, so header ${c.header.toLowerCase()} is not added`);
    }
  }
  if (!p.rule.forwardOriginalToken) ctx.steps.push(`${label}: ${removeToken(t, ctx.req)}`);
  ctx.payload = jwt.payload;
  ctx.payloadProvider = p;
  return 'Ok';
}

/**
 * JwtRequirement requires_any with allow_missing (verifier.cc AnyVerifierImpl::onComplete):
 * Ok as soon as a child is Ok; otherwise prefer an error other than JwtMissed/JwtUnknownIssuer,
 * then JwtUnknownIssuer over JwtMissed; allow_missing turns only a final JwtMissed into Ok.
 */
function aggregateAny(statuses: Status[], allowMissing: boolean): Status {
  let final: Status = 'JwtMissed';
  for (const s of statuses) if ((s !== 'JwtMissed' && s !== 'JwtUnknownIssuer') || final === 'JwtMissed') final = s;
  return allowMissing && final === 'JwtMissed' ? 'Ok' : final;
}

async function anyOf(children: (() => Promise<Status>)[], allowMissing: boolean): Promise<Status> {
  const statuses: Status[] = [];
  for (const child of children) {
    const s = await child();
    if (s === 'Ok') return 'Ok';
    statuses.push(s);
  }
  return aggregateAny(statuses, allowMissing);
}

/**
 * Runs the requirement istiod generates (policy_applier.go convertToEnvoyJwtConfig): one provider:
 * any{P0, allow_missing}; several: any{P0, …, Pn, all{any{P0, allow_missing}, …}}. A request
 * without any token passes; a token that any provider rejects fails unless another accepts it.
 */
export async function runJwtAuthn(providers: readonly Provider[], ctx: JwtContext): Promise<Status> {
  const provider = (p: Provider) => () => verifyProvider(p, ctx);
  const optional = (p: Provider) => () => anyOf([provider(p)], true);
  if (providers.length === 1) return optional(providers[0]!)();
  const all = async (): Promise<Status> => {
    ctx.steps.push('no single provider accepted every token it found; now each provider must accept its tokens or find none (the inner AND)');
    for (const p of providers) {
      const s = await optional(p)();
      if (s !== 'Ok') return s;
    }
    return 'Ok';
  };
  return anyOf([...providers.map(provider), all], false);
}
