import type { AlternativeTrace, PolicyTrace, RbacAttributes, TraceEvent } from './events.js';
import { compileRegex, quoteMeta } from './regex.js';
import { pathOnly, type StreamState } from './request.js';

/**
 * Envoy's RBAC filter running its own config (envoy.extensions.filters.http.rbac.v3.RBAC, proto3
 * JSON): the policies of `rules` and `shadowRules` (a policy matches when one permission and one
 * principal match; the first matching name, in the std::map order Envoy keeps them, is the
 * effective policy), the permission/principal matchers of source/extensions/filters/common/rbac/
 * matchers.cc, and the string/value/metadata matchers of source/common/common/matchers.cc.
 * Everything is compiled once per config; matching is linear in the request (safe_regex on the
 * automaton of ./regex.ts).
 */

type Json = Record<string, unknown>;

/** What the matchers read: the request as the filter sees it. */
interface MatchContext {
  req: StreamState;
  /** The peer certificate's URI SAN (spiffe://...), when the connection has one. */
  peer: string | undefined;
}

interface Matcher {
  match: (c: MatchContext) => boolean;
  /** For an OR (or a NOT of an OR): the index of the first alternative that matches, for the explanation. */
  hit?: (c: MatchContext) => number | undefined;
}

/** StringMatcher: exact, prefix, suffix, contains, safe_regex; ignore_case. */
export function stringMatcher(m: Json): (v: string | undefined) => boolean {
  const ignore = m.ignoreCase === true;
  const norm = (s: string) => (ignore ? s.toLowerCase() : s);
  if (typeof m.exact === 'string') {
    const want = norm(m.exact);
    return (v) => v !== undefined && norm(v) === want;
  }
  if (typeof m.prefix === 'string') {
    const want = norm(m.prefix);
    return (v) => v !== undefined && norm(v).startsWith(want);
  }
  if (typeof m.suffix === 'string') {
    const want = norm(m.suffix);
    return (v) => v !== undefined && norm(v).endsWith(want);
  }
  if (typeof m.contains === 'string') {
    const want = norm(m.contains);
    return (v) => v !== undefined && norm(v).includes(want);
  }
  const regex = (m.safeRegex as Json | undefined)?.regex;
  if (typeof regex === 'string') {
    const re = compileRegex(regex);
    return (v) => v !== undefined && re(v);
  }
  throw new Error(`unsupported string matcher ${JSON.stringify(m)}`);
}

/** ValueMatcher over a metadata value (a JSON value; undefined when absent). */
function valueMatcher(m: Json): (v: unknown) => boolean {
  if (m.stringMatch) {
    const s = stringMatcher(m.stringMatch as Json);
    return (v) => typeof v === 'string' && s(v);
  }
  if (m.listMatch) {
    const one = valueMatcher((m.listMatch as Json).oneOf as Json);
    return (v) => Array.isArray(v) && v.some(one);
  }
  if (m.orMatch) {
    const all = ((m.orMatch as Json).valueMatchers as Json[]).map(valueMatcher);
    return (v) => all.some((x) => x(v));
  }
  if ('presentMatch' in m) return (v) => (v !== undefined) === (m.presentMatch === true);
  if ('boolMatch' in m) return (v) => v === m.boolMatch;
  if ('nullMatch' in m) return (v) => v === null;
  if (m.doubleMatch && typeof (m.doubleMatch as Json).exact === 'number') return (v) => v === (m.doubleMatch as Json).exact;
  throw new Error(`unsupported value matcher ${JSON.stringify(m)}`);
}

/** MetadataMatcher: the value at `path` in a filter's dynamic metadata. */
export function metadataMatcher(m: Json): (metadata: StreamState['metadata']) => boolean {
  const keys = ((m.path as { key: string }[] | undefined) ?? []).map((p) => p.key);
  const value = valueMatcher(m.value as Json);
  const invert = m.invert === true;
  return (metadata) => {
    let cur: unknown = metadata.get(m.filter as string);
    for (const k of keys) cur = cur !== null && typeof cur === 'object' && !Array.isArray(cur) ? (cur as Json)[k] : undefined;
    return value(cur) !== invert;
  };
}

/** The value of a request header as the header matcher sees it: repeated values joined with ",". */
function headerValue(req: StreamState, name: string): string | undefined {
  const key = name.toLowerCase();
  if (key === ':authority' || key === 'host') return req.host;
  if (key === ':method') return req.method;
  if (key === ':path') return req.path;
  if (key === ':scheme') return req.scheme;
  return req.headers.get(key)?.join(',');
}

function headerMatcher(h: Json): (c: MatchContext) => boolean {
  const name = h.name as string;
  const invert = h.invertMatch === true;
  if ('presentMatch' in h) return (c) => (headerValue(c.req, name) !== undefined) === (h.presentMatch === true) !== invert;
  const s = stringMatcher((h.stringMatch ?? {}) as Json);
  return (c) => s(headerValue(c.req, name)) !== invert;
}

/** An IPv4/IPv6 address as a number and its width, or undefined. */
function ipBits(ip: string): { v: bigint; len: number } | undefined {
  if (ip.includes(':')) {
    const [head, tail] = ip.split('::') as [string, string | undefined];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = tail !== undefined ? [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h;
    if (groups.length !== 8 || groups.some((g) => !/^[0-9a-fA-F]{0,4}$/.test(g))) return undefined;
    return { v: groups.reduce((acc, g) => (acc << 16n) + BigInt(parseInt(g || '0', 16)), 0n), len: 128 };
  }
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) return undefined;
  return { v: parts.reduce((acc, n) => (acc << 8n) + BigInt(n), 0n), len: 32 };
}

/** CidrRange containment. */
function cidrMatcher(range: Json): (ip: string | undefined) => boolean {
  const base = ipBits(String(range.addressPrefix));
  const prefix = Number(range.prefixLen ?? base?.len ?? 0);
  return (ip) => {
    if (!ip || !base) return false;
    const v = ipBits(ip);
    if (!v || v.len !== base.len) return false;
    const shift = BigInt(base.len - prefix);
    return v.v >> shift === base.v >> shift;
  };
}

/** uri_template (envoy.path.match.uri_template): `*` one non-empty segment, `**` any run, the rest literal; run as a regex. */
function uriTemplateMatcher(template: string): (path: string) => boolean {
  const regex = template
    .split(/(\*\*|\*)/)
    .map((part) => (part === '**' ? '.*' : part === '*' ? '[^/]+' : quoteMeta(part)))
    .join('');
  return compileRegex(regex);
}

const first = (ms: Matcher[]) => (c: MatchContext) => {
  const i = ms.findIndex((m) => m.match(c));
  return i >= 0 ? i : undefined;
};

/** A Permission or Principal (both share and/or/not, any, header, url_path, metadata). */
function compileMatcher(m: Json): Matcher {
  const list = (key: 'andRules' | 'orRules' | 'andIds' | 'orIds') => ((m[key] as Json)[key.endsWith('Rules') ? 'rules' : 'ids'] as Json[]).map(compileMatcher);
  if (m.any === true) return { match: () => true };
  if (m.andRules || m.andIds) {
    const all = list(m.andRules ? 'andRules' : 'andIds');
    return { match: (c) => all.every((x) => x.match(c)) };
  }
  if (m.orRules || m.orIds) {
    const any = list(m.orRules ? 'orRules' : 'orIds');
    return { match: (c) => any.some((x) => x.match(c)), hit: first(any) };
  }
  if (m.notRule || m.notId) {
    const inner = compileMatcher((m.notRule ?? m.notId) as Json);
    return { match: (c) => !inner.match(c), hit: inner.hit };
  }
  if (m.header) {
    const h = headerMatcher(m.header as Json);
    return { match: h };
  }
  if (m.urlPath) {
    const s = stringMatcher((m.urlPath as Json).path as Json);
    return { match: (c) => s(pathOnly(c.req.path)) };
  }
  if (m.uriTemplate) {
    const t = uriTemplateMatcher(String(((m.uriTemplate as Json).typedConfig as Json).pathTemplate));
    return { match: (c) => t(pathOnly(c.req.path)) };
  }
  if (m.destinationPort !== undefined) return { match: (c) => c.req.connection.port === Number(m.destinationPort) };
  if (m.destinationIp) {
    const r = cidrMatcher(m.destinationIp as Json);
    return { match: (c) => r(c.req.connection.destinationIp) };
  }
  if (m.directRemoteIp || m.sourceIp) {
    const r = cidrMatcher((m.directRemoteIp ?? m.sourceIp) as Json);
    return { match: (c) => r(c.req.connection.sourceIp) };
  }
  if (m.remoteIp) {
    const r = cidrMatcher(m.remoteIp as Json);
    return { match: (c) => r(c.req.connection.remoteIp ?? c.req.connection.sourceIp) };
  }
  if (m.requestedServerName) {
    const s = stringMatcher(m.requestedServerName as Json);
    return { match: (c) => s(c.req.connection.sni) };
  }
  if (m.authenticated) {
    // AuthenticatedMatcher: no peer certificate, no match; without principal_name any peer matches.
    const name = (m.authenticated as Json).principalName as Json | undefined;
    const s = name ? stringMatcher(name) : () => true;
    return { match: (c) => c.peer !== undefined && s(c.peer) };
  }
  if (m.metadata) {
    const md = metadataMatcher(m.metadata as Json);
    return { match: (c) => md(c.req.metadata) };
  }
  throw new Error(`unsupported RBAC matcher ${Object.keys(m).join(', ')}`);
}

interface CompiledPolicy {
  name: string;
  permissions: Matcher[][];
  principals: Matcher[][];
}

/** A permission or principal of a policy: its AND entries (istiod always writes an and_rules / and_ids at the top). */
function entries(m: Json): Matcher[] {
  const and = (m.andRules as Json | undefined)?.rules ?? (m.andIds as Json | undefined)?.ids;
  return Array.isArray(and) ? (and as Json[]).map(compileMatcher) : [compileMatcher(m)];
}

interface CompiledEngine {
  action: 'ALLOW' | 'DENY' | 'LOG';
  policies: CompiledPolicy[];
}

function compileEngine(rules: Json | undefined): CompiledEngine | undefined {
  if (!rules) return undefined;
  const policies = Object.entries((rules.policies ?? {}) as Record<string, Json>)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, p]) => ({ name, permissions: ((p.permissions ?? []) as Json[]).map(entries), principals: ((p.principals ?? []) as Json[]).map(entries) }));
  return { action: (rules.action as CompiledEngine['action'] | undefined) ?? 'ALLOW', policies };
}

/** The RBAC filter, compiled once per config. */
export interface RbacFilter {
  rules?: CompiledEngine;
  shadowRules?: CompiledEngine;
  shadowPrefix: string;
}

/** Parses the filter's config: matchers and regexes compiled. */
export function compileRbac(config: Json): RbacFilter {
  return { rules: compileEngine(config.rules as Json | undefined), shadowRules: compileEngine(config.shadowRules as Json | undefined), shadowPrefix: String(config.shadowRulesStatPrefix ?? '') };
}

function traceAlternative(list: Matcher[], c: MatchContext): AlternativeTrace {
  const out: AlternativeTrace['entries'] = [];
  for (const m of list) {
    const ok = m.match(c);
    out.push({ ok, hit: m.hit?.(c) });
    if (!ok) return { ok: false, entries: out };
  }
  return { ok: true, entries: out };
}

/** RoleBasedAccessControlEngineImpl::checkPolicyMatch with every policy traced; the first match is the effective policy. */
function runEngine(engine: CompiledEngine, c: MatchContext): { traces: PolicyTrace[]; effective?: string } {
  const traces = engine.policies.map((p) => {
    const permissions = p.permissions.map((list) => traceAlternative(list, c));
    const principals = p.principals.map((list) => traceAlternative(list, c));
    return { name: p.name, matched: permissions.some((x) => x.ok) && principals.some((x) => x.ok), permissions, principals };
  });
  return { traces, effective: traces.find((t) => t.matched)?.name };
}

function attributesOf(c: MatchContext): RbacAttributes {
  const { req } = c;
  const headers: Record<string, string> = {};
  for (const [k, v] of req.headers) headers[k] = v.join(',');
  const payload = req.metadata.get('envoy.filters.http.jwt_authn')?.payload as Record<string, unknown> | undefined;
  return { method: req.method, host: req.host, path: pathOnly(req.path), headers, ...req.connection, peer: c.peer, payload };
}

const SPIFFE = 'spiffe://';

/** Runs the filter (decodeHeaders): the shadow engine writes its metadata, the enforced one may deny. */
export function runRbac(filter: RbacFilter, index: number, req: StreamState, emit: (e: TraceEvent) => void): 'continue' | 'deny' {
  const principal = req.connection.sourcePrincipal;
  const c: MatchContext = { req, peer: principal ? SPIFFE + principal.replace(/^spiffe:\/\//, '') : undefined };
  if (filter.shadowRules) {
    const r = runEngine(filter.shadowRules, c);
    emit({ kind: 'rbac', filter: index, action: filter.shadowRules.action, shadow: true, policies: r.traces, effective: r.effective, attributes: attributesOf(c) });
    if (r.effective) {
      const allowed = filter.shadowRules.action === 'DENY' ? false : true;
      req.metadata.set('envoy.filters.http.rbac', {
        ...req.metadata.get('envoy.filters.http.rbac'),
        [`${filter.shadowPrefix}shadow_effective_policy_id`]: r.effective,
        [`${filter.shadowPrefix}shadow_engine_result`]: allowed ? 'allowed' : 'denied',
      });
    }
  }
  if (!filter.rules) return 'continue';
  const r = runEngine(filter.rules, c);
  emit({ kind: 'rbac', filter: index, action: filter.rules.action, shadow: false, policies: r.traces, effective: r.effective, attributes: attributesOf(c) });
  if (filter.rules.action === 'ALLOW') return r.effective ? 'continue' : 'deny';
  if (filter.rules.action === 'DENY') return r.effective ? 'deny' : 'continue';
  return 'continue';
}
