import { epochSeconds } from '../lib/jwt.js';
import { suppliedJwks, type AuthorizationPolicy, type MeshPolicy, type RequestAuthentication } from './policies.js';
import { CLOCK_SKEW_SECONDS, STATUS, loadJwks, runJwtAuthn, type HeaderMap, type JwtContext, type LoadedJwks, type Provider, type Status } from './jwt.js';
import { toHeaderMap } from './envoy/headers.js';
import { release, type Release } from './istio/releases.js';
import { selectorText, whyNotInScope } from './istio/scope.js';
import { jwksText } from './translate/index.js';
import { matchPolicy, type AuthzRequest, type ConnectionAttributes } from './authz.js';

/**
 * evaluate(): what the workload's sidecar does with one request under the given
 * RequestAuthentication and AuthorizationPolicy objects: jwt_authn first (401, or 403 for
 * audiences), then CUSTOM, DENY and ALLOW (403 "RBAC: access denied"), else the request goes
 * upstream with the headers Envoy would send. Pure and HTTP-free: JWKS arrive as data.
 */

/** One request as a client sends it. */
export interface MeshRequest extends ConnectionAttributes {
  method: string;
  /** Path, optionally with a query string. */
  path: string;
  headers?: Record<string, string | string[]>;
  /** Extra query parameters, appended to the path's own. */
  query?: Record<string, string | string[]>;
  /** Extra cookies, added to those of the cookie header. */
  cookies?: Record<string, string>;
  /** Scheme the sidecar saw (x-forwarded-proto), used in the 401 realm. Default http. */
  scheme?: string;
}

export interface Workload {
  namespace: string;
  labels: Record<string, string>;
}

export interface EvaluateInput {
  policies: readonly MeshPolicy[];
  request: MeshRequest;
  /** JWKS documents (objects or JSON text) keyed by jwksUri or by issuer, for rules without inline `jwks`. */
  jwks?: Record<string, unknown>;
  now: Date;
  /** The workload the request reaches; without it every policy is taken to apply. */
  workload?: Workload;
  /** Istio's root namespace (meshConfig.rootNamespace), default istio-system. */
  rootNamespace?: string;
  /** What the CUSTOM (ext_authz) provider answers; it cannot be called from here. Default allow. */
  customAuthz?: 'allow' | 'deny';
  /** The Istio release modelled ("1.28", "1.29.1"), default the newest (mesh/istio/releases.ts). */
  istio?: string;
}

export interface Verdict {
  /** 200 when the sidecar forwards the request. */
  status: 200 | 401 | 403;
  /** The body Envoy answers with ("" when forwarded). */
  body: string;
  /** Headers of Envoy's own answer (www-authenticate on a jwt_authn refusal, content-type). */
  responseHeaders: Record<string, string>;
  /** `<iss>/<sub>` of the verified token, or null. */
  principal: string | null;
  /** The verified payload the mesh keeps as metadata, or null. */
  claims: Record<string, unknown> | null;
  /** Headers the upstream receives (token removed unless forwardOriginalToken, outputs added). */
  upstreamHeaders: Record<string, string | string[]>;
  /** The path the upstream receives (a token in a query parameter is removed). */
  upstreamPath: string;
  /** The rule or policy that decided, in Istio's names. */
  decidedBy: string;
  /** The explanation, one plain sentence per step. */
  steps: string[];
  /** The Istio release the verdict models. */
  istio: string;
}

/** Http::Utility::parseCookies: name=value pairs of every cookie header, first occurrence wins, quotes dropped. */
function parseCookies(headers: HeaderMap, extra: Record<string, string> | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const line of headers.get('cookie') ?? []) {
    for (const pair of line.split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0) continue;
      const name = pair.slice(0, eq).trim();
      let value = pair.slice(eq + 1).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      if (name && !cookies.has(name)) cookies.set(name, value);
    }
  }
  for (const [k, v] of Object.entries(extra ?? {})) if (!cookies.has(k)) cookies.set(k, v);
  return cookies;
}

/** RFC 3986 dot-segment removal: Envoy's normalize_path, on by default in Istio (pathNormalization BASE). */
export function normalizePath(full: string): string {
  const q = full.indexOf('?');
  const path = q >= 0 ? full.slice(0, q) : full;
  const out: string[] = [];
  const segments = path.split('/');
  segments.forEach((seg, i) => {
    if (seg === '.') {
      if (i === segments.length - 1) out.push('');
    } else if (seg === '..') {
      if (out.length > 1) out.pop();
      if (i === segments.length - 1) out.push('');
    } else out.push(seg);
  });
  let normalized = out.join('/');
  if (!normalized.startsWith('/')) normalized = `/${normalized}`;
  return normalized + (q >= 0 ? full.slice(q) : '');
}

function withQuery(path: string, query: Record<string, string | string[]> | undefined): string {
  const entries = Object.entries(query ?? {}).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => [k, x] as [string, string]));
  if (entries.length === 0) return path;
  const extra = new URLSearchParams(entries).toString();
  return path + (path.includes('?') ? '&' : '?') + extra;
}

export { whyNotInScope } from './istio/scope.js';

/** The JWKS a rule ends up with in the sidecar: inline, supplied (by jwksUri, issuer or "*"), else the release's fallback. */
function jwksFor(p: RequestAuthentication, index: number, input: EvaluateInput, rel: Release, steps: string[]): LoadedJwks {
  const rule = p.jwtRules[index]!;
  const label = `${p.namespace ?? input.workload?.namespace ?? ''}/${p.name} jwtRules[${index}]`;
  const j = jwksText(rule, input.jwks, rel);
  if (!j.fallback) return loadJwks(j.text);
  const uri = rule.jwksUri ?? `${(rule.issuer ?? '').replace(/\/$/, '')}/.well-known/openid-configuration`;
  const which = rel.has.publicOnlyJwksFallback ? 'its public-only JWKS (an RSA key whose private half was discarded, no kid)' : 'its fake JWKS (one RSA key, no kid)';
  steps.push(`${label}: no JWKS for ${uri}; like istiod ${rel.version} when it cannot fetch, the sidecar gets ${which}, so every token of this issuer fails verification`);
  return { ...loadJwks(j.text), fake: true };
}

/** Envoy's jwt_authn refusal: 401 (403 for audiences), www-authenticate with the original URI. */
function jwtRefusal(status: Status, req: MeshRequest, host: string, path: string): Pick<Verdict, 'status' | 'body' | 'responseHeaders'> {
  // filter.cc onComplete + Http::Utility::buildOriginalUri (scheme://host + path, path cut at 256).
  const uri = `${req.scheme ?? 'http'}://${host}${path.slice(0, 256)}`;
  const realm = `Bearer realm="${uri}"${status === 'JwtMissed' ? '' : ', error="invalid_token"'}`;
  return {
    status: status === 'JwtAudienceNotAllowed' ? 403 : 401,
    body: STATUS[status],
    responseHeaders: { 'www-authenticate': realm, 'content-type': 'text/plain' },
  };
}

/** Envoy RBAC / ext_authz local reply. */
const RBAC_DENIED = { status: 403 as const, body: 'RBAC: access denied', responseHeaders: { 'content-type': 'text/plain' } };

/** space_delimited_claims (policy_applier.go buildSpaceDelimitedClaims): scope and permission, plus the rule's. */
function normalizePayload(payload: Record<string, unknown>, claims: readonly string[]): Record<string, unknown> {
  const out = { ...payload };
  for (const c of claims) {
    const v = out[c];
    if (typeof v === 'string') out[c] = v.split(' ').filter(Boolean);
  }
  return out;
}

function headersOut(map: HeaderMap): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of map) out[k] = v.length === 1 ? v[0]! : v;
  return out;
}

/** `<iss>/<sub>` of a verified payload, or null. */
function principalOf(payload: Record<string, unknown> | undefined): string | null {
  return payload && (typeof payload.iss === 'string' || typeof payload.sub === 'string') ? `${payload.iss ?? ''}/${payload.sub ?? ''}` : null;
}

/**
 * The CUSTOM stage (builder.go buildHTTP, IsCustomBuilder): a shadow RBAC marks requests that a
 * CUSTOM rule matches, and only those go to the provider. With several providers istiod builds
 * no ext_authz at all and turns the CUSTOM rules into DENY rules (getBadCustomDenyRules).
 * Returns the refusal, or undefined when the request goes on.
 */
function runCustom(
  custom: readonly AuthorizationPolicy[],
  req: AuthzRequest,
  nsOf: (p: MeshPolicy) => string,
  decision: 'allow' | 'deny',
  steps: string[],
): { decidedBy: string; refusal: { status: 403; body: string; responseHeaders: Record<string, string> } } | undefined {
  if (custom.length === 0) return undefined;
  const names = [...new Set(custom.map((p) => p.provider))];
  if (names.length > 1) steps.push(`CUSTOM policies name ${names.length} providers (${names.join(', ')}); istiod allows one per workload, so their rules become DENY rules and no provider is asked`);
  for (const p of custom) {
    const m = matchPolicy(p, nsOf(p), req);
    steps.push(...m.lines);
    if (!m.matched) continue;
    if (names.length > 1) {
      steps.push(`the CUSTOM rule ${m.matched} now denies: 403 "RBAC: access denied"`);
      return { decidedBy: `CUSTOM ${m.matched} (several providers: deny)`, refusal: RBAC_DENIED };
    }
    if (decision === 'deny') {
      steps.push(`the external authorizer "${p.provider}" is asked and refuses (customAuthz: deny): 403`);
      return { decidedBy: `CUSTOM ${m.matched} (provider ${p.provider})`, refusal: { status: 403, body: '', responseHeaders: {} } };
    }
    steps.push(`the external authorizer "${p.provider}" is asked; it cannot be called from here and is assumed to allow (pass customAuthz: deny to see its refusal)`);
    return undefined;
  }
  return undefined;
}

/** Evaluates one request as the workload's sidecar would; see the module comment. */
export async function evaluate(input: EvaluateInput): Promise<Verdict> {
  const steps: string[] = [];
  const req = input.request;
  const method = req.method.toUpperCase();
  const headers = toHeaderMap(req.headers);
  const asSent = withQuery(req.path, req.query);
  const state = { headers, path: normalizePath(asSent), cookies: parseCookies(headers, req.cookies) };
  const host = headers.get(':authority')?.[0] ?? headers.get('host')?.[0] ?? '';
  const nowSeconds = epochSeconds(input.now);
  const rel = release(input.istio);
  if (state.path !== asSent) steps.push(`the path is normalised to ${state.path.split('?')[0]} (Istio's default path normalisation)`);

  if (input.policies.length === 0) {
    steps.push('no RequestAuthentication or AuthorizationPolicy was given (other kinds, such as PeerAuthentication or Deployments, are not read): with no policy the sidecar checks nothing and lets the request through');
  }
  const skipped: string[] = [];
  const applies = (p: MeshPolicy) => {
    const why = whyNotInScope(p, input);
    if (why) skipped.push(`${p.kind} ${p.namespace ?? '(no namespace)'}/${p.name} (${why})`);
    return why === undefined;
  };
  const reqAuthn = input.policies.filter((p): p is RequestAuthentication => p.kind === 'RequestAuthentication' && applies(p));
  const authz = input.policies.filter((p): p is AuthorizationPolicy => p.kind === 'AuthorizationPolicy' && applies(p));
  if (input.workload) {
    const labels = selectorText(input.workload.labels);
    steps.push(`the workload is ${labels ? `${labels} ` : ''}in namespace ${input.workload.namespace}; ${reqAuthn.length + authz.length} of ${input.policies.length} policies apply`);
  }
  if (skipped.length > 0) steps.push(`not applying to this workload: ${skipped.join('; ')}`);
  if (!input.workload && input.policies.some((p) => p.matchLabels)) {
    steps.push('no workload given: every policy is taken to apply, even those whose selector names another workload (give the workload to narrow them)');
  }
  const nsOf = (p: MeshPolicy) => p.namespace ?? input.workload?.namespace ?? 'default';
  steps.push(`modelling Istio ${rel.version} (its sidecar runs Envoy ${rel.envoy}); pass another release to see how it differs`);

  const authzRequestOf = (verified: Record<string, unknown> | undefined): AuthzRequest => ({
    method,
    path: state.path,
    host,
    headers: state.headers,
    port: req.port,
    sourcePrincipal: req.sourcePrincipal,
    sourceIp: req.sourceIp,
    remoteIp: req.remoteIp,
    destinationIp: req.destinationIp,
    sni: req.sni,
    payload: verified,
  });
  const refuse = (decidedBy: string, refusal: { status: 403; body: string; responseHeaders: Record<string, string> }, verified?: Record<string, unknown>): Verdict => ({
    ...refusal,
    principal: principalOf(verified),
    claims: verified ?? null,
    upstreamHeaders: {},
    upstreamPath: state.path,
    decidedBy,
    steps,
    istio: rel.version,
  });
  const enforced = authz.filter((p) => {
    if (p.dryRun) steps.push(`${p.action} ${nsOf(p)}/${p.name} is dry-run (istio.io/dry-run): evaluated for logs only, never enforced`);
    if (p.action === 'AUDIT') steps.push(`AUDIT ${nsOf(p)}/${p.name} only marks requests for logging; it never allows or denies`);
    return !p.dryRun && p.action !== 'AUDIT';
  });
  const byAction = (a: AuthorizationPolicy['action']) => enforced.filter((p) => p.action === a);
  const customStage = (verified: Record<string, unknown> | undefined): Verdict | undefined => {
    const decided = runCustom(byAction('CUSTOM'), authzRequestOf(verified), nsOf, input.customAuthz ?? 'allow', steps);
    return decided && refuse(decided.decidedBy, decided.refusal, verified);
  };
  // listener_builder.go: CUSTOM's filters come before jwt_authn, so ext_authz sees no verified JWT.
  if (rel.has.customBeforeJwtAuthn) {
    const refused = customStage(undefined);
    if (refused) return refused;
  }

  // istiod merges the jwtRules of every RequestAuthentication and sorts them by issuer (policy_applier.go).
  const rules = reqAuthn
    .flatMap((p) => p.jwtRules.map((rule, i) => ({ rule, policy: `${nsOf(p)}/${p.name}`, jwks: jwksFor(p, i, input, rel, steps) })))
    .sort((a, b) => ((a.rule.issuer ?? '') < (b.rule.issuer ?? '') ? -1 : (a.rule.issuer ?? '') > (b.rule.issuer ?? '') ? 1 : 0));
  const providers: Provider[] = rules.map((r, i) => ({ name: `origins-${i}`, ...r }));

  // filter.cc records the original URI (with its query) before any token is removed.
  const originalPath = state.path;
  const ctx: JwtContext = { req: state, nowSeconds, steps, claimJson: rel.has.claimToHeadersJson };
  let payload: Record<string, unknown> | undefined;
  if (providers.length === 0) {
    steps.push('no RequestAuthentication applies: no JWT is checked and requests carry no request principal');
  } else {
    steps.push(`jwt_authn has ${providers.length} provider${providers.length > 1 ? 's' : ''}: ${providers.map((p) => `${p.name} = issuer ${p.rule.issuer ?? '(any)'}`).join(', ')}; clock skew ${CLOCK_SKEW_SECONDS} s`);
    const corsPreflight = method === 'OPTIONS' && headers.has('origin') && headers.has('access-control-request-method');
    if (corsPreflight) {
      steps.push('CORS preflight (OPTIONS with Origin and Access-Control-Request-Method): istiod sets bypass_cors_preflight, so jwt_authn lets it through without looking at tokens; authorization still applies');
    } else {
      const status = await runJwtAuthn(providers, ctx);
      if (status !== 'Ok') {
        steps.push(`jwt_authn refuses the request: ${status === 'JwtAudienceNotAllowed' ? '403' : '401'} "${STATUS[status]}"`);
        return {
          ...jwtRefusal(status, req, host, originalPath),
          principal: null,
          claims: null,
          upstreamHeaders: {},
          upstreamPath: state.path,
          decidedBy: `RequestAuthentication ${[...new Set(providers.map((x) => x.policy))].join(', ')} (jwt_authn: ${STATUS[status]})`,
          steps,
          istio: rel.version,
        };
      }
      if (ctx.payload && ctx.payloadProvider) {
        payload = normalizePayload(ctx.payload, ['permission', 'scope', ...(ctx.payloadProvider.rule.spaceDelimitedClaims ?? [])]);
        steps.push(`jwt_authn accepts the request; request principal "${String(ctx.payload.iss ?? '')}/${String(ctx.payload.sub ?? '')}"`);
      } else {
        steps.push('jwt_authn lets the request through: it carries no token at any configured location (RequestAuthentication alone never demands one)');
      }
    }
  }
  const authzReq = authzRequestOf(payload);
  const done = (decidedBy: string, refusal?: typeof RBAC_DENIED | { status: 403; body: string; responseHeaders: Record<string, string> }): Verdict => ({
    status: refusal?.status ?? 200,
    body: refusal?.body ?? '',
    responseHeaders: refusal?.responseHeaders ?? {},
    principal: principalOf(payload),
    claims: payload ?? null,
    upstreamHeaders: refusal ? {} : headersOut(state.headers),
    upstreamPath: state.path,
    decidedBy,
    steps,
    istio: rel.version,
  });

  if (!rel.has.customBeforeJwtAuthn) {
    const refused = customStage(payload);
    if (refused) return refused;
  }
  for (const p of byAction('DENY')) {
    const m = matchPolicy(p, nsOf(p), authzReq);
    steps.push(...m.lines);
    if (m.matched) {
      steps.push(`DENY policy ${m.matched} matches: 403 "RBAC: access denied"`);
      return done(`AuthorizationPolicy DENY ${m.matched}`, RBAC_DENIED);
    }
  }
  const allow = byAction('ALLOW');
  if (allow.length === 0) {
    steps.push('no ALLOW policy applies to the workload, so every request that no DENY matched is allowed');
    return done(providers.length > 0 ? 'no AuthorizationPolicy denies it (RequestAuthentication passed)' : 'no policy refuses it');
  }
  for (const p of allow) {
    const m = matchPolicy(p, nsOf(p), authzReq);
    steps.push(...m.lines);
    if (m.matched) {
      steps.push(`ALLOW policy ${m.matched} matches: the request goes to the upstream`);
      return done(`AuthorizationPolicy ALLOW ${m.matched}`);
    }
  }
  steps.push(`${allow.length} ALLOW polic${allow.length > 1 ? 'ies apply' : 'y applies'} and none matches: 403 "RBAC: access denied"`);
  return done(`AuthorizationPolicy: no ALLOW rule matches (${allow.map((p) => `${nsOf(p)}/${p.name}`).join(', ')})`, RBAC_DENIED);
}
