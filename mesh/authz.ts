import type { AuthorizationPolicy, ConditionSpec, OperationSpec, RuleSpec, SourceSpec } from './policies.js';
import { claimPath } from './policies.js';
import type { HeaderMap } from './jwt.js';
import { globMatches, literal, starGlob, type GlobElement } from './glob.js';

/**
 * Istio AuthorizationPolicy as istiod turns it into Envoy RBAC and Envoy evaluates it.
 *
 * Sources: istio/istio pilot/pkg/security/authz/model/model.go (a rule is OR over `from`, OR over
 * `to`, AND with every `when`; values OR'ed, notValues negated), generator.go (one matcher per
 * attribute, requestPrincipals split at the last "/"), matcher/*.go (the `*` forms, hosts
 * case-insensitive), builder/builder.go (CUSTOM, then DENY, then ALLOW; a policy without rules
 * never matches; names `ns[NS]-policy[NAME]-rule[N]`).
 */

/** What the sidecar knows of the connection a request came on (AuthorizationPolicy `source` and `to`). */
export interface ConnectionAttributes {
  /** Destination port of the workload the request reached (`ports`, `destination.port`). */
  port?: number;
  /** The peer's mTLS identity, e.g. cluster.local/ns/jwt-suite/sa/servicea (`principals`, `namespaces`; needs mTLS). */
  sourcePrincipal?: string;
  sourceIp?: string;
  remoteIp?: string;
  destinationIp?: string;
  sni?: string;
}

/** What RBAC can see of a request once jwt_authn has run. */
export interface AuthzRequest extends ConnectionAttributes {
  method: string;
  /** :path as the RBAC filter gets it (query included; url_path matchers ignore the query). */
  path: string;
  /** :authority. */
  host: string;
  headers: HeaderMap;
  /** The verified JWT payload (jwt_authn metadata "payload"), normalised as Envoy stores it. */
  payload?: Record<string, unknown>;
}

/** One condition's outcome with a sentence for the explanation. */
interface Check {
  ok: boolean;
  why: string;
}

type Matcher = (v: string | undefined) => boolean;

/** matcher.StringMatcher: "*" is any non-empty value (regex ".+"), "*x" a suffix, "x*" a prefix. */
export function istioString(pattern: string, ignoreCase = false): Matcher {
  const norm = (s: string) => (ignoreCase ? s.toLowerCase() : s);
  const p = norm(pattern);
  if (p === '*') return (v) => v !== undefined && v.length > 0;
  if (p.startsWith('*')) return (v) => v !== undefined && norm(v).endsWith(p.slice(1));
  if (p.endsWith('*')) return (v) => v !== undefined && norm(v).startsWith(p.slice(0, -1));
  return (v) => v !== undefined && norm(v) === p;
}

/** Header matchers (matcher.HeaderMatcher): "*" means present, even when empty. */
function headerMatcher(pattern: string): Matcher {
  if (pattern === '*') return (v) => v !== undefined;
  return istioString(pattern);
}

/**
 * Path templates (Istio 1.21+): {*} one segment, {**} any number of segments. Matched by the
 * linear automaton of glob.ts: a policy's path never becomes a RegExp.
 */
function pathMatcher(pattern: string): Matcher {
  if (pattern.includes('{*}') || pattern.includes('{**}')) {
    const elements = pattern
      .split(/(\{\*\*\}|\{\*\})/)
      .flatMap((part): GlobElement[] => (part === '{**}' ? [{ star: 'any' }] : part === '{*}' ? [{ one: 'segment' }, { star: 'segment' }] : literal(part)));
    return (v) => v !== undefined && globMatches(elements, v);
  }
  return istioString(pattern);
}

/** IPv4/IPv6 address or CIDR containment, as principalDirectRemoteIP / permissionDestinationIP. */
function cidrMatcher(block: string): Matcher {
  const [addr, bits] = block.split('/') as [string, string | undefined];
  const toBig = (ip: string): { v: bigint; len: number } | undefined => {
    if (ip.includes(':')) {
      const [head, tail] = ip.split('::') as [string, string | undefined];
      const h = head ? head.split(':') : [];
      const t = tail ? tail.split(':') : [];
      const groups = tail !== undefined ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
      if (groups.length !== 8) return undefined;
      return { v: groups.reduce((acc, g) => (acc << 16n) + BigInt(parseInt(g || '0', 16)), 0n), len: 128 };
    }
    const parts = ip.split('.').map(Number);
    if (parts.length !== 4 || parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) return undefined;
    return { v: parts.reduce((acc, n) => (acc << 8n) + BigInt(n), 0n), len: 32 };
  };
  const base = toBig(addr);
  return (v) => {
    if (!v || !base) return false;
    const ip = toBig(v);
    if (!ip || ip.len !== base.len) return false;
    const prefix = bits === undefined ? base.len : Number(bits);
    const shift = BigInt(base.len - prefix);
    return ip.v >> shift === base.v >> shift;
  };
}

/** Envoy joins repeated headers with "," for matching. */
function headerValue(headers: HeaderMap, name: string): string | undefined {
  const v = headers.get(name.toLowerCase());
  return v === undefined ? undefined : v.join(',');
}

/** The url_path RBAC matcher sees the path without its query string. */
function pathOnly(path: string): string {
  const q = path.indexOf('?');
  return q >= 0 ? path.slice(0, q) : path;
}

/** The value of request.auth.claims[a][b] in the metadata payload. */
function claimAt(payload: Record<string, unknown> | undefined, keys: string[]): unknown {
  let cur: unknown = payload;
  for (const k of keys) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

/** MetadataListValueMatcher with useExtendedJwt: a string value, or a list with one such element. */
function claimMatches(value: unknown, pattern: string): boolean {
  const m = istioString(pattern);
  if (typeof value === 'string') return m(value);
  if (Array.isArray(value)) return value.some((v) => typeof v === 'string' && m(v));
  return false;
}

/**
 * requestPrincipalGenerator.extendedPrincipal (generator.go): the value is split at its LAST "/",
 * and iss and sub are matched separately against the JWT metadata. `*` is any non-empty iss and sub;
 * `*x` / `x*` become suffix / prefix matches on the issuer or subject part.
 */
export function requestPrincipalMatches(pattern: string, payload: Record<string, unknown> | undefined): boolean {
  const iss = typeof payload?.iss === 'string' ? payload.iss : undefined;
  const sub = typeof payload?.sub === 'string' ? payload.sub : undefined;
  const any: Matcher = (v) => v !== undefined && v.length > 0;
  const idx = pattern.lastIndexOf('/');
  const found = idx >= 0;
  const pIss = found ? pattern.slice(0, idx) : pattern;
  const pSub = found ? pattern.slice(idx + 1) : '';
  let mIss: Matcher;
  let mSub: Matcher;
  if (pattern === '*') {
    mIss = any;
    mSub = any;
  } else if (pattern.startsWith('*')) {
    if (found) {
      mIss = pIss === '*' ? any : (v) => v !== undefined && v.endsWith(pIss.slice(1));
      mSub = (v) => v === pSub;
    } else {
      mIss = any;
      mSub = (v) => v !== undefined && v.endsWith(pattern.slice(1));
    }
  } else if (pattern.endsWith('*')) {
    if (found) {
      mIss = (v) => v === pIss;
      mSub = pSub === '*' ? any : (v) => v !== undefined && v.startsWith(pSub.slice(0, -1));
    } else {
      mIss = (v) => v !== undefined && v.startsWith(pattern.slice(0, -1));
      mSub = any;
    }
  } else {
    mIss = (v) => v === pIss;
    mSub = (v) => v === pSub;
  }
  return mIss(iss) && mSub(sub);
}

const SPIFFE = 'spiffe://';

/**
 * `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?` with ns and sa literal, in linear time. The earliest
 * `/ns/<ns>/` leaves the longest rest, and any `sa/<sa>` a later one allows, it allows too.
 */
function serviceAccountMatches(peer: string, ns: string, sa: string): boolean {
  if (!peer.startsWith(SPIFFE)) return false;
  const at = peer.indexOf(`/ns/${ns}/`, SPIFFE.length + 1);
  if (at < 0) return false;
  const rest = peer.slice(at + `/ns/${ns}/`.length);
  const needle = `sa/${sa}`;
  for (let p = rest.indexOf(needle); p >= 0; p = rest.indexOf(needle, p + 1)) {
    const before = p === 0 || (p >= 2 && rest[p - 1] === '/');
    const end = p + needle.length;
    const after = end === rest.length || (rest[end] === '/' && end + 1 < rest.length);
    if (before && after) return true;
  }
  return false;
}

/** A field with values (OR) and notValues (NOT OR), described for the explanation. */
function field(label: string, values: string[] | undefined, notValues: string[] | undefined, test: (v: string) => boolean, actual: string): Check | undefined {
  if (!values?.length && !notValues?.length) return undefined;
  if (values?.length && !values.some(test)) return { ok: false, why: `${label} must be one of [${values.join(', ')}] but is ${actual}` };
  const hit = notValues?.find(test);
  if (hit !== undefined) return { ok: false, why: `${label} must not match "${hit}" but is ${actual}` };
  return { ok: true, why: `${label} ${actual} fits` };
}

const show = (v: string | undefined) => (v === undefined || v === '' ? '(none)' : `"${v}"`);

function principalText(req: AuthzRequest): string {
  const iss = req.payload?.iss;
  const sub = req.payload?.sub;
  if (typeof iss !== 'string' && typeof sub !== 'string') return '(none: no verified JWT)';
  return `"${iss ?? ''}/${sub ?? ''}"`;
}

function sourceChecks(s: SourceSpec, req: AuthzRequest, policyNamespace: string): (Check | undefined)[] {
  const peer = req.sourcePrincipal ? SPIFFE + req.sourcePrincipal.replace(/^spiffe:\/\//, '') : undefined;
  const peerText = peer ? `"${peer.slice(SPIFFE.length)}"` : '(none: no mTLS peer identity)';
  const principal = (p: string) => {
    if (p === '*') return peer !== undefined;
    return istioString(p.startsWith('*') ? p : SPIFFE + p)(peer);
  };
  // generator.go srcNamespaceGenerator: regex `.*/ns/<value, * as .*>/.*`; the rest of the value is literal.
  const namespace = (ns: string) => peer !== undefined && globMatches(starGlob(`*/ns/${ns}/*`), peer);
  const serviceAccount = (value: string) => {
    const [ns, sa] = value.includes('/') ? (value.split('/', 2) as [string, string]) : [policyNamespace, value];
    return peer !== undefined && serviceAccountMatches(peer, ns, sa);
  };
  return [
    field('principals (peer mTLS identity)', s.principals, s.notPrincipals, principal, peerText),
    field('requestPrincipals', s.requestPrincipals, s.notRequestPrincipals, (v) => requestPrincipalMatches(v, req.payload), principalText(req)),
    field('namespaces (from the peer identity)', s.namespaces, s.notNamespaces, namespace, peerText),
    field('serviceAccounts', s.serviceAccounts, s.notServiceAccounts, serviceAccount, peerText),
    field('remoteIpBlocks', s.remoteIpBlocks, s.notRemoteIpBlocks, (b) => cidrMatcher(b)(req.remoteIp ?? req.sourceIp), show(req.remoteIp ?? req.sourceIp)),
    field('ipBlocks', s.ipBlocks, s.notIpBlocks, (b) => cidrMatcher(b)(req.sourceIp), show(req.sourceIp)),
  ];
}

function operationChecks(o: OperationSpec, req: AuthzRequest): (Check | undefined)[] {
  const path = pathOnly(req.path);
  const port = req.port === undefined ? undefined : String(req.port);
  return [
    field('hosts', o.hosts, o.notHosts, (h) => (h === '*' ? req.host !== undefined : istioString(h, true)(req.host)), show(req.host)),
    field('methods', o.methods, o.notMethods, (m) => headerMatcher(m)(req.method), show(req.method)),
    field('paths', o.paths, o.notPaths, (p) => pathMatcher(p)(path), show(path)),
    field('ports', o.ports, o.notPorts, (p) => p === port, port ?? '(unknown: pass the destination port)'),
  ];
}

function conditionCheck(c: ConditionSpec, req: AuthzRequest, policyNamespace: string): Check {
  const k = c.key;
  const check = (test: (v: string) => boolean, actual: string) => field(`when ${k}`, c.values, c.notValues, test, actual)!;
  if (k === 'request.auth.principal') return check((v) => requestPrincipalMatches(v, req.payload), principalText(req));
  if (k === 'request.auth.audiences') return check((v) => claimMatches(req.payload?.aud, v), JSON.stringify(req.payload?.aud ?? null));
  if (k === 'request.auth.presenter') return check((v) => claimMatches(req.payload?.azp, v), JSON.stringify(req.payload?.azp ?? null));
  if (k.startsWith('request.auth.claims[')) {
    const value = claimAt(req.payload, claimPath(k)!);
    return check((v) => claimMatches(value, v), JSON.stringify(value ?? null));
  }
  if (k.startsWith('request.headers[')) {
    const name = k.slice('request.headers['.length, -1);
    const value = headerValue(req.headers, name);
    return check((v) => headerMatcher(v)(value), show(value));
  }
  const source = sourceChecks(
    {
      ...(k === 'source.principal' ? { principals: c.values, notPrincipals: c.notValues } : {}),
      ...(k === 'source.namespace' ? { namespaces: c.values, notNamespaces: c.notValues } : {}),
      ...(k === 'source.serviceAccount' ? { serviceAccounts: c.values, notServiceAccounts: c.notValues } : {}),
      ...(k === 'source.ip' ? { ipBlocks: c.values, notIpBlocks: c.notValues } : {}),
      ...(k === 'remote.ip' ? { remoteIpBlocks: c.values, notRemoteIpBlocks: c.notValues } : {}),
    },
    req,
    policyNamespace,
  ).find((x) => x !== undefined);
  if (source) return { ok: source.ok, why: `when ${k}: ${source.why}` };
  if (k === 'destination.port') return check((v) => String(req.port) === v, req.port === undefined ? '(unknown)' : String(req.port));
  if (k === 'destination.ip') return check((v) => cidrMatcher(v)(req.destinationIp), show(req.destinationIp));
  if (k === 'connection.sni') return check((v) => istioString(v)(req.sni), show(req.sni));
  // experimental.envoy.filters.*: metadata of other filters is not modelled; such a condition never matches.
  return { ok: false, why: `when ${k}: Envoy filter metadata is not modelled here, so the condition is treated as not matching` };
}

/** AND of the defined checks; reports the first that fails. */
function allOf(checks: (Check | undefined)[]): Check {
  const defined = checks.filter((c): c is Check => c !== undefined);
  const bad = defined.find((c) => !c.ok);
  if (bad) return bad;
  return { ok: true, why: defined.map((c) => c.why).join('; ') || 'no condition' };
}

/** Model.New + Generate: (any from) AND (any to) AND (every when). */
export function ruleMatches(rule: RuleSpec, req: AuthzRequest, policyNamespace: string): Check {
  const parts: Check[] = [];
  if (rule.from?.length) {
    const results = rule.from.map((f) => allOf(sourceChecks(f.source ?? {}, req, policyNamespace)));
    const hit = results.find((r) => r.ok);
    parts.push(hit ?? { ok: false, why: `no from matches (${results.map((r) => r.why).join(' | ')})` });
  }
  if (rule.to?.length) {
    const results = rule.to.map((t) => allOf(operationChecks(t.operation ?? {}, req)));
    const hit = results.find((r) => r.ok);
    parts.push(hit ?? { ok: false, why: `no to matches (${results.map((r) => r.why).join(' | ')})` });
  }
  for (const c of rule.when ?? []) parts.push(conditionCheck(c, req, policyNamespace));
  return allOf(parts);
}

/** builder.go policyName. */
export function rbacPolicyName(namespace: string, name: string, rule: number): string {
  return `ns[${namespace}]-policy[${name}]-rule[${rule}]`;
}

export interface PolicyMatch {
  /** The RBAC policy name of the first rule that matched. */
  matched?: string;
  lines: string[];
}

/** Which rule of a policy matches, if any, with a line per rule. */
export function matchPolicy(p: AuthorizationPolicy, namespace: string, req: AuthzRequest): PolicyMatch {
  const lines: string[] = [];
  if (p.rules.length === 0) {
    // builder.go: "Generate an explicit policy that never matches."
    lines.push(`${p.action} ${namespace}/${p.name} has no rules, so it matches nothing${p.action === 'ALLOW' ? ' (allow-nothing)' : ''}`);
    return { lines };
  }
  let matched: string | undefined;
  p.rules.forEach((rule, i) => {
    const name = rbacPolicyName(namespace, p.name, i);
    if (!rule) {
      lines.push(`${p.action} ${name}: empty rule skipped by istiod`);
      return;
    }
    const r = ruleMatches(rule, req, namespace);
    lines.push(`${p.action} ${name}: ${r.ok ? 'matches' : 'does not match'} — ${r.why}`);
    if (r.ok && matched === undefined) matched = name;
  });
  return { matched, lines };
}
