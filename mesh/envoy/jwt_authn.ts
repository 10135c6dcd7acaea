import { CLOCK_SKEW_SECONDS, areAudiencesAllowed, checkTime, loadJwks, parseJwt, verifySignature, type LoadedJwks, type Status } from './jwt_verify.js';
import type { TokenLocation, TraceEvent } from './events.js';
import type { HeaderMap } from './headers.js';
import type { StreamState } from './request.js';

/**
 * Envoy's jwt_authn filter running its own config (JwtAuthentication, proto3 JSON field names):
 * the extractor (extractor.cc), the authenticator's checks per token (authenticator.cc), the
 * requirement tree (verifier.cc: requires_any, requires_all, allow_missing,
 * allow_missing_or_failed) and the filter's answer (filter.cc: 401, 403 for audiences,
 * www-authenticate, bypass_cors_preflight). Each JWKS is parsed once, when the config is compiled.
 */

/** JwtProvider, as istiod writes it. */
export interface JwtProviderConfig {
  issuer?: string;
  audiences?: string[];
  localJwks?: { inlineString?: string };
  fromHeaders?: { name: string; valuePrefix?: string }[];
  fromParams?: string[];
  fromCookies?: string[];
  forward?: boolean;
  forwardPayloadHeader?: string;
  claimToHeaders?: { headerName: string; claimName: string }[];
  payloadInMetadata?: string;
  normalizePayloadInMetadata?: { spaceDelimitedClaims?: string[] };
}

/** JwtRequirement. */
export type JwtRequirement =
  | { providerName: string }
  | { requiresAny: { requirements: JwtRequirement[] } }
  | { requiresAll: { requirements: JwtRequirement[] } }
  | { allowMissing: Record<string, never> }
  | { allowMissingOrFailed: Record<string, never> };

/** JwtAuthentication. */
export interface JwtAuthenticationConfig {
  providers: Record<string, JwtProviderConfig>;
  rules?: { match?: { prefix?: string }; requires?: JwtRequirement }[];
  bypassCorsPreflight?: boolean;
}

interface CompiledProvider {
  name: string;
  config: JwtProviderConfig;
  jwks: LoadedJwks;
  headers: { name: string; prefix: string }[];
  params: string[];
  cookies: string[];
}

/** The filter, compiled once per config. */
export interface JwtAuthnFilter {
  providers: Map<string, CompiledProvider>;
  config: JwtAuthenticationConfig;
  /** The release's Envoy sends list and object claims to headers as base64 JSON. */
  claimJson: boolean;
}

/** ExtractorImpl::addProvider: explicit locations, else Authorization "Bearer " and access_token. */
function compileProvider(name: string, config: JwtProviderConfig): CompiledProvider {
  let headers = (config.fromHeaders ?? []).map((h) => ({ name: h.name.toLowerCase(), prefix: h.valuePrefix ?? '' }));
  let params = config.fromParams ?? [];
  const cookies = config.fromCookies ?? [];
  if (headers.length === 0 && params.length === 0 && cookies.length === 0) {
    headers = [{ name: 'authorization', prefix: 'Bearer ' }];
    params = ['access_token'];
  }
  return { name, config, jwks: loadJwks(config.localJwks?.inlineString ?? ''), headers, params, cookies };
}

/** Parses the filter's config: providers with their JWKS loaded. */
export function compileJwtAuthn(config: JwtAuthenticationConfig, claimJson: boolean): JwtAuthnFilter {
  return { config, claimJson, providers: new Map(Object.entries(config.providers).map(([name, p]) => [name, compileProvider(name, p)])) };
}

/** The provider's locations, in the explanation's order. */
export function locationsOf(p: CompiledProvider): TokenLocation[] {
  return [
    ...p.headers.map((h) => ({ kind: 'header' as const, ...h })),
    ...p.params.map((name) => ({ kind: 'param' as const, name })),
    ...p.cookies.map((name) => ({ kind: 'cookie' as const, name })),
  ];
}

const JWT_CHARS = /[A-Za-z0-9_.-]/;

/** ExtractorImpl::extractJWT: skip to the first base64url-or-dot character after the prefix. */
function afterPrefix(value: string, after: number): string {
  for (let i = after; i < value.length; i++) if (JWT_CHARS.test(value[i]!)) return value.slice(i);
  return value;
}

function queryOf(path: string): URLSearchParams {
  const q = path.indexOf('?');
  return new URLSearchParams(q >= 0 ? path.slice(q + 1) : '');
}

const byteOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

interface ExtractedToken {
  token: string;
  location: TokenLocation;
}

/**
 * ExtractorImpl::extract for one provider: header locations in std::map order (name+prefix),
 * every value of each header; then query parameters (first value); then cookies.
 */
function extractTokens(p: CompiledProvider, req: StreamState): ExtractedToken[] {
  const tokens: ExtractedToken[] = [];
  const headerSpecs = new Map(p.headers.map((h) => [h.name + h.prefix, h]));
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
      tokens.push({ token: value, location: { kind: 'header', ...spec } });
    }
  }
  if (p.params.length > 0) {
    const params = queryOf(req.path);
    for (const name of [...new Set(p.params)].sort(byteOrder)) {
      const v = params.get(name);
      if (v !== null) tokens.push({ token: v, location: { kind: 'param', name } });
    }
  }
  for (const name of [...new Set(p.cookies)].sort(byteOrder)) {
    const v = req.cookies.get(name);
    if (v !== undefined) tokens.push({ token: v, location: { kind: 'cookie', name } });
  }
  return tokens;
}

/** JwtLocation::removeJwt: the whole header, or the one query parameter; cookies stay (Envoy TODO). */
function removeToken(location: TokenLocation, req: StreamState): void {
  if (location.kind === 'header') req.headers.delete(location.name);
  if (location.kind === 'param') {
    const q = req.path.indexOf('?');
    const params = queryOf(req.path);
    params.delete(location.name);
    const rest = params.toString();
    req.path = (q >= 0 ? req.path.slice(0, q) : req.path) + (rest ? `?${rest}` : '');
  }
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
function nestedClaim(payload: Record<string, unknown>, dotted: string): unknown {
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

/** normalize_payload_in_metadata: the space-delimited claims become lists. */
function normalizePayload(payload: Record<string, unknown>, claims: readonly string[]): Record<string, unknown> {
  const out = { ...payload };
  for (const c of claims) {
    const v = out[c];
    if (typeof v === 'string') out[c] = v.split(' ').filter(Boolean);
  }
  return out;
}

/** One request's run of the filter. */
interface Run {
  filter: JwtAuthnFilter;
  req: StreamState;
  nowSeconds: number;
  emit: (e: TraceEvent) => void;
  /** The metadata "payload" key: the last successful provider overwrites it (ContextImpl::addExtractedData). */
  payload?: Record<string, unknown>;
  payloadProvider?: CompiledProvider;
}

/** ExtractorImpl::sanitizeHeaders: a client cannot smuggle the headers this provider will write. */
function sanitize(p: CompiledProvider, req: StreamState): void {
  if (p.config.forwardPayloadHeader) req.headers.delete(p.config.forwardPayloadHeader.toLowerCase());
  for (const c of p.config.claimToHeaders ?? []) req.headers.delete(c.headerName.toLowerCase());
}

/**
 * ProviderVerifierImpl + AuthenticatorImpl for one provider: the provider's locations are
 * extracted; tokens are checked last-found first; every token must pass, the first failure ends it.
 */
async function verifyProvider(p: CompiledProvider, run: Run): Promise<Status> {
  sanitize(p, run.req);
  const tokens = extractTokens(p, run.req);
  if (tokens.length === 0) {
    run.emit({ kind: 'jwt-no-token', provider: p.name, locations: locationsOf(p) });
    return 'JwtMissed';
  }
  while (tokens.length > 0) {
    const status = await verifyOne(p, tokens.pop()!, run);
    if (status !== 'Ok') return status;
  }
  return 'Ok';
}

/** AuthenticatorImpl::startVerify → verifyKey → handleGoodJwt for one token. */
async function verifyOne(p: CompiledProvider, t: ExtractedToken, run: Run): Promise<Status> {
  const { location } = t;
  const reject = (status: Status, reason: Extract<TraceEvent, { kind: 'jwt-rejected' }>['reason']): Status => {
    run.emit({ kind: 'jwt-rejected', provider: p.name, location, status, reason });
    return status;
  };
  const parsed = parseJwt(t.token);
  if (!parsed.ok) return reject(parsed.status, { check: 'parse' });
  const jwt = parsed.jwt;
  const issuer = p.config.issuer;
  if (issuer && jwt.iss !== issuer) return reject('JwtUnknownIssuer', { check: 'issuer', iss: jwt.iss, allowed: [issuer] });
  const now = run.nowSeconds;
  const time = { nbf: jwt.nbf, exp: jwt.exp, now, skew: CLOCK_SKEW_SECONDS };
  const timeStatus = checkTime(jwt, now);
  if (timeStatus !== 'Ok') return reject(timeStatus, { check: 'time', ...time });
  const configured = p.config.audiences ?? [];
  if (!areAudiencesAllowed(configured, jwt.audiences)) return reject('JwtAudienceNotAllowed', { check: 'audience', configured, got: jwt.audiences });
  if (p.jwks.invalid) return reject('JwksNoValidKeys', { check: 'jwks', invalid: p.jwks.invalid });
  const sig = await verifySignature(jwt, p.jwks);
  if (sig.status !== 'Ok') {
    const keys = p.jwks.keys.map((k) => ({ kid: typeof k.kid === 'string' ? k.kid : undefined, alg: typeof k.alg === 'string' ? k.alg : undefined }));
    return reject(sig.status, { check: 'signature', alg: jwt.alg, kid: jwt.kid, tried: sig.tried, keys });
  }
  run.emit({ kind: 'jwt-valid', provider: p.name, location, iss: jwt.iss, alg: jwt.alg, keyKid: sig.kid, ...time, audiences: configured });
  // handleGoodJwt: payload header, claim headers, token removal, metadata.
  if (p.config.forwardPayloadHeader) {
    appendHeader(run.req.headers, p.config.forwardPayloadHeader, jwt.payloadB64);
    run.emit({ kind: 'jwt-payload-header', provider: p.name, location, header: p.config.forwardPayloadHeader.toLowerCase() });
  }
  for (const c of p.config.claimToHeaders ?? []) {
    const value = claimToString(nestedClaim(jwt.payload, c.claimName), run.filter.claimJson);
    if (value) appendHeader(run.req.headers, c.headerName, value);
    run.emit({ kind: 'jwt-claim-header', provider: p.name, location, header: c.headerName.toLowerCase(), claim: c.claimName, value: value || undefined, json: run.filter.claimJson });
  }
  if (!p.config.forward) {
    removeToken(location, run.req);
    run.emit({ kind: 'jwt-token-removed', provider: p.name, location });
  }
  run.payload = jwt.payload;
  run.payloadProvider = p;
  return 'Ok';
}

/**
 * AnyVerifierImpl::onComplete: Ok as soon as a child is Ok; otherwise prefer an error other than
 * JwtMissed/JwtUnknownIssuer, then JwtUnknownIssuer over JwtMissed; allow_missing turns only a
 * final JwtMissed into Ok, allow_missing_or_failed any failure.
 */
function aggregateAny(statuses: Status[], allowMissing: boolean, allowFailed: boolean): Status {
  let final: Status = 'JwtMissed';
  for (const s of statuses) if ((s !== 'JwtMissed' && s !== 'JwtUnknownIssuer') || final === 'JwtMissed') final = s;
  if (allowFailed) return 'Ok';
  return allowMissing && final === 'JwtMissed' ? 'Ok' : final;
}

/** A requirement of the tree (verifier.cc Verifier::create). */
async function verifyRequirement(r: JwtRequirement, run: Run, nested: boolean): Promise<Status> {
  if ('providerName' in r) {
    const p = run.filter.providers.get(r.providerName);
    // Envoy refuses such a config at load time; istiod never writes one.
    if (!p) throw new Error(`jwt_authn requirement names unknown provider "${r.providerName}"`);
    return verifyProvider(p, run);
  }
  if ('allowMissing' in r) return aggregateAny([], true, false);
  if ('allowMissingOrFailed' in r) return 'Ok';
  if ('requiresAll' in r) {
    if (nested) run.emit({ kind: 'jwt-inner-and' });
    for (const child of r.requiresAll.requirements) {
      const s = await verifyRequirement(child, run, true);
      if (s !== 'Ok') return s;
    }
    return 'Ok';
  }
  const children = r.requiresAny.requirements;
  const allowMissing = children.some((c) => 'allowMissing' in c);
  const allowFailed = children.some((c) => 'allowMissingOrFailed' in c);
  const statuses: Status[] = [];
  for (const child of children) {
    if ('allowMissing' in child || 'allowMissingOrFailed' in child) continue;
    const s = await verifyRequirement(child, run, true);
    if (s === 'Ok') return 'Ok';
    statuses.push(s);
  }
  return aggregateAny(statuses, allowMissing, allowFailed);
}

/** The filter's result: Ok (the request goes on, maybe with a verified payload) or the status of its refusal. */
export interface JwtAuthnResult {
  status: Status;
  /** The verified, normalised payload written to metadata, with the provider that wrote it. */
  payload?: Record<string, unknown>;
  provider?: string;
}

/** Runs the filter on one request (decodeHeaders → onComplete); see the module comment. */
export async function runJwtAuthn(filter: JwtAuthnFilter, req: StreamState, nowSeconds: number, emit: (e: TraceEvent) => void): Promise<JwtAuthnResult> {
  // filter.cc: a CORS preflight passes untouched when bypass_cors_preflight is set.
  if (filter.config.bypassCorsPreflight && req.method === 'OPTIONS' && req.headers.has('origin') && req.headers.has('access-control-request-method')) {
    emit({ kind: 'jwt-cors-preflight' });
    return { status: 'Ok' };
  }
  const path = req.path;
  const rule = (filter.config.rules ?? []).find((r) => path.startsWith(r.match?.prefix ?? '/'));
  const run: Run = { filter, req, nowSeconds, emit };
  const status = rule?.requires ? await verifyRequirement(rule.requires, run, false) : 'Ok';
  if (status !== 'Ok') {
    emit({ kind: 'jwt-done', status });
    return { status };
  }
  const p = run.payloadProvider;
  const key = p?.config.payloadInMetadata;
  if (!p || !run.payload || !key) {
    emit({ kind: 'jwt-done', status });
    return { status };
  }
  const payload = normalizePayload(run.payload, p.config.normalizePayloadInMetadata?.spaceDelimitedClaims ?? []);
  req.metadata.set('envoy.filters.http.jwt_authn', { [key]: payload });
  emit({ kind: 'jwt-done', status, provider: p.name, payload });
  return { status, payload, provider: p.name };
}
