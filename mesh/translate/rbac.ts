import { quoteMeta } from '../envoy/regex.js';
import { requestPrincipalParts, type PrincipalPart } from '../istio/match.js';
import { claimPath, type AuthorizationPolicy, type RuleSpec } from '../istio/policies.js';

/**
 * istiod's AuthorizationPolicy → Envoy RBAC translation, as data: the same policy names and
 * the same permission/principal trees istiod writes, in the proto3 JSON (lowerCamelCase) that
 * istiod's own golden files and Envoy's bootstrap both read.
 *
 * Sources: istio/istio pilot/pkg/security/authz/model/model.go (New: `when` first, then
 * `from`/`to` fields inserted in front; Generate), model/generator.go (one generator per
 * attribute), matcher/*.go (StringMatcher, HeaderMatcher, HostMatcher), model/util.go
 * (MetadataListValueMatcherForJWTClaims, the "extended JWT" form read from jwt_authn's
 * `payload` metadata), builder/builder.go (policy names, rbacPolicyMatchNever, CUSTOM).
 */

/** A proto3 JSON object as Envoy and istiod's golden files spell it. */
export type Json = Record<string, unknown>;

const JWT_FILTER = 'envoy.filters.http.jwt_authn';
const SPIFFE = 'spiffe://';

const regex = (r: string): Json => ({ safeRegex: { regex: r } });
const exact = (v: string, ignoreCase = false): Json => (ignoreCase ? { exact: v, ignoreCase } : { exact: v });
const prefix = (v: string, ignoreCase = false): Json => (ignoreCase ? { ignoreCase, prefix: v } : { prefix: v });
const suffix = (v: string, ignoreCase = false): Json => (ignoreCase ? { ignoreCase, suffix: v } : { suffix: v });

/** matcher.StringMatcherWithPrefix: "*" any non-empty, "*x" suffix, "x*" prefix, else exact. */
export function stringMatcher(v: string, pre = ''): Json {
  if (v === '*') return regex('.+');
  if (v.startsWith('*')) return pre === '' ? suffix(v.slice(1)) : regex(`${pre}.*${quoteMeta(v.slice(1))}`);
  if (v.endsWith('*')) return prefix(pre + v.slice(0, -1));
  return exact(pre + v);
}

/** matcher.HeaderMatcher / HostMatcher: "*" is presence; hosts compare without case. */
function headerMatcher(name: string, v: string, ignoreCase = false): Json {
  if (v === '*') return { name, presentMatch: true };
  if (v.startsWith('*')) return { name, stringMatch: suffix(v.slice(1), ignoreCase) };
  if (v.endsWith('*')) return { name, stringMatch: prefix(v.slice(0, -1), ignoreCase) };
  return { name, stringMatch: exact(v, ignoreCase) };
}

/** util.AddrStrToCidrRange. */
function cidr(v: string): Json {
  const [address, bits] = v.split('/') as [string, string | undefined];
  return { addressPrefix: address, prefixLen: bits === undefined ? (address.includes(':') ? 128 : 32) : Number(bits) };
}

const or = (matchers: Json[]): Json => (matchers.length === 1 ? matchers[0]! : { orMatch: { valueMatchers: matchers } });
const stringOr = (values: readonly string[]): Json => or(values.map((v) => ({ stringMatch: stringMatcher(v) })));

/** MetadataListValueMatcher with useExtendedJwt: a list with one such element, or the value itself. */
function jwtClaimsMatcher(claims: readonly string[], value: Json): Json {
  return {
    filter: JWT_FILTER,
    path: ['payload', ...claims].map((key) => ({ key })),
    value: { orMatch: { valueMatchers: [{ listMatch: { oneOf: value } }, value] } },
  };
}

const jwtClaim = (claim: string, m: Json): Json => ({ metadata: { filter: JWT_FILTER, path: [{ key: 'payload' }, { key: claim }], value: { stringMatch: m } } });
const authenticated = (m: Json): Json => ({ authenticated: { principalName: m } });
const andIds = (ids: Json[]): Json => ({ andIds: { ids } });
const orIds = (ids: Json[]): Json => ({ orIds: { ids } });
const andRules = (rules: Json[]): Json => ({ andRules: { rules } });
const orRules = (rules: Json[]): Json => ({ orRules: { rules } });

/** requestPrincipalGenerator.extendedPrincipal: iss and sub of each value matched apart, OR'ed. */
function requestPrincipals(values: readonly string[]): Json {
  const toMatcher = (part: PrincipalPart): Json => ('any' in part ? regex('.+') : 'exact' in part ? exact(part.exact) : 'prefix' in part ? prefix(part.prefix) : suffix(part.suffix));
  const ids = values.map((value) => {
    const { iss, sub } = requestPrincipalParts(value);
    return andIds([jwtClaim('iss', toMatcher(iss)), jwtClaim('sub', toMatcher(sub))]);
  });
  return ids.length === 1 ? ids[0]! : orIds(ids);
}

/** srcServiceAccountGenerator: "ns/sa" or "sa" (the policy's namespace). */
function serviceAccountRegex(policyNamespace: string, value: string): string {
  const slash = value.indexOf('/');
  const [ns, sa] = slash >= 0 ? [value.slice(0, slash), value.slice(slash + 1)] : [policyNamespace, value];
  return `spiffe://.+/ns/${quoteMeta(ns)}/(.+/|)sa/${quoteMeta(sa)}(/.+)?`;
}

type Kind = 'permission' | 'principal';

/** One attribute of a rule: how each value becomes a matcher, or how all values do (extended). */
interface Attr {
  kind: Kind;
  one?: (v: string) => Json;
  all?: (values: readonly string[]) => Json;
}

function attrFor(key: string, policyNamespace: string): Attr | undefined {
  switch (key) {
    case 'destination.ip':
      return { kind: 'permission', one: (v) => ({ destinationIp: cidr(v) }) };
    case 'destination.port':
      return { kind: 'permission', one: (v) => ({ destinationPort: Number(v) }) };
    case 'connection.sni':
      return { kind: 'permission', one: (v) => ({ requestedServerName: stringMatcher(v) }) };
    case 'source.ip':
      return { kind: 'principal', one: (v) => ({ directRemoteIp: cidr(v) }) };
    case 'remote.ip':
      return { kind: 'principal', one: (v) => ({ remoteIp: cidr(v) }) };
    case 'source.namespace':
      return { kind: 'principal', one: (v) => authenticated(regex(`.*/ns/${v.split('*').map(quoteMeta).join('.*')}/.*`)) };
    case 'source.serviceAccount':
      return { kind: 'principal', one: (v) => authenticated(regex(serviceAccountRegex(policyNamespace, v))) };
    case 'source.principal':
      return { kind: 'principal', one: (v) => authenticated(stringMatcher(v, SPIFFE)) };
    case 'request.auth.principal':
      return { kind: 'principal', all: requestPrincipals };
    case 'request.auth.audiences':
      return { kind: 'principal', all: (vs) => ({ metadata: jwtClaimsMatcher(['aud'], stringOr(vs)) }) };
    case 'request.auth.presenter':
      return { kind: 'principal', all: (vs) => ({ metadata: jwtClaimsMatcher(['azp'], stringOr(vs)) }) };
    case ':authority':
      return { kind: 'permission', one: (v) => ({ header: headerMatcher(':authority', v, true) }) };
    case ':method':
      return { kind: 'permission', one: (v) => ({ header: headerMatcher(':method', v) }) };
    case 'path-matcher':
      return {
        kind: 'permission',
        one: (v) =>
          v.includes('{*}') || v.includes('{**}')
            ? {
                uriTemplate: {
                  name: 'uri-template',
                  typedConfig: {
                    '@type': 'type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig',
                    pathTemplate: v.replaceAll('{**}', '**').replaceAll('{*}', '*'),
                  },
                },
              }
            : { urlPath: { path: stringMatcher(v) } },
      };
  }
  if (key.startsWith('request.headers[')) {
    const name = key.slice('request.headers['.length, -1);
    return { kind: 'principal', one: (v) => ({ header: headerMatcher(name, v) }) };
  }
  if (key.startsWith('request.auth.claims[')) {
    const claims = claimPath(key) ?? [];
    return { kind: 'principal', all: (vs) => ({ metadata: jwtClaimsMatcher(claims, stringOr(vs)) }) };
  }
  if (key.startsWith('experimental.envoy.filters.')) {
    // envoyFilterGenerator.extendedPermission: "[v]" matches a list element.
    const [filter, name] = key.slice('experimental.'.length, -1).split('[', 2) as [string, string];
    return {
      kind: 'permission',
      all: (vs) => ({
        metadata: {
          filter,
          path: [{ key: name }],
          value: or(vs.map((v) => (v.startsWith('[') && v.endsWith(']') ? { listMatch: { oneOf: { stringMatch: stringMatcher(v.slice(1, -1)) } } } : { stringMatch: stringMatcher(v) }))),
        },
      }),
    };
  }
  return undefined;
}

interface RuleEntry {
  key: string;
  /** The part of the Istio rule it came from. */
  from: FieldRef['from'];
  values: readonly string[];
  notValues: readonly string[];
}

/** Which Istio field one AND entry of a permission or principal came from (values, or notValues when negated). */
export interface FieldRef {
  key: string;
  from: 'source' | 'operation' | 'when';
  values: readonly string[];
  negated: boolean;
}

/** The Istio fields behind each permission and principal of a generated policy, entry by entry. */
export interface PolicyFields {
  permissions: FieldRef[][];
  principals: FieldRef[][];
}

const fieldRefs = (entries: readonly RuleEntry[]): FieldRef[] =>
  entries.flatMap((e) => [
    ...(e.values.length ? [{ key: e.key, from: e.from, values: e.values, negated: false }] : []),
    ...(e.notValues.length ? [{ key: e.key, from: e.from, values: e.notValues, negated: true }] : []),
  ]);

/** rule.permission / rule.principal: OR of the values, then NOT(OR of the notValues). */
function entryMatchers(e: RuleEntry, attr: Attr): Json[] {
  const wrapNot = (m: Json): Json => (attr.kind === 'permission' ? { notRule: m } : { notId: m });
  const orOf = (ms: Json[]): Json => (attr.kind === 'permission' ? orRules(ms) : orIds(ms));
  const out: Json[] = [];
  for (const [list, negate] of [
    [e.values, false],
    [e.notValues, true],
  ] as const) {
    if (list.length === 0) continue;
    const m = attr.all ? attr.all(list) : orOf(list.map((v) => attr.one!(v)));
    out.push(negate ? wrapNot(m) : m);
  }
  return out;
}

const has = (v?: readonly string[], n?: readonly string[]) => (v?.length ?? 0) > 0 || (n?.length ?? 0) > 0;

/** model.New + Generate for one rule: permissions and principals of the Envoy Policy. */
export function generatePolicy(rule: RuleSpec, policyNamespace: string): { policy?: Json; fields?: PolicyFields; error?: string } {
  const basePermission: RuleEntry[] = [];
  const basePrincipal: RuleEntry[] = [];
  for (const w of rule.when ?? []) {
    const attr = attrFor(w.key, policyNamespace);
    if (!attr) return { error: `unknown attribute ${w.key}` };
    (attr.kind === 'permission' ? basePermission : basePrincipal).push({ key: w.key, from: 'when', values: w.values ?? [], notValues: w.notValues ?? [] });
  }
  const front = (list: RuleEntry[], key: string, values?: string[], notValues?: string[]) => {
    const from = key.startsWith('source.') || key.startsWith('request.') || key === 'remote.ip' ? 'source' : 'operation';
    if (has(values, notValues)) list.unshift({ key, from, values: values ?? [], notValues: notValues ?? [] });
  };
  const principals: RuleEntry[][] = (rule.from?.length ? rule.from : [undefined]).map((f) => {
    const merged = [...basePrincipal];
    const s = f?.source;
    if (s) {
      front(merged, 'source.ip', s.ipBlocks, s.notIpBlocks);
      front(merged, 'remote.ip', s.remoteIpBlocks, s.notRemoteIpBlocks);
      front(merged, 'source.namespace', s.namespaces, s.notNamespaces);
      front(merged, 'source.serviceAccount', s.serviceAccounts, s.notServiceAccounts);
      front(merged, 'request.auth.principal', s.requestPrincipals, s.notRequestPrincipals);
      front(merged, 'source.principal', s.principals, s.notPrincipals);
    }
    return merged;
  });
  const permissions: RuleEntry[][] = (rule.to?.length ? rule.to : [undefined]).map((t) => {
    const merged = [...basePermission];
    const o = t?.operation;
    if (o) {
      front(merged, 'destination.port', o.ports, o.notPorts);
      front(merged, 'path-matcher', o.paths, o.notPaths);
      front(merged, ':method', o.methods, o.notMethods);
      front(merged, ':authority', o.hosts, o.notHosts);
    }
    return merged;
  });
  const build = (entries: RuleEntry[], kind: Kind): Json => {
    const and = entries.flatMap((e) => entryMatchers(e, attrFor(e.key, policyNamespace)!));
    if (kind === 'permission') return andRules(and.length ? and : [{ any: true }]);
    return andIds(and.length ? and : [{ any: true }]);
  };
  return {
    policy: { permissions: permissions.map((p) => build(p, 'permission')), principals: principals.map((p) => build(p, 'principal')) },
    fields: { permissions: permissions.map(fieldRefs), principals: principals.map(fieldRefs) },
  };
}

/** builder.go rbacPolicyMatchNever: a policy without rules never matches. */
const MATCH_NEVER: Json = { permissions: [{ notRule: { any: true } }], principals: [{ notId: { any: true } }] };

/**
 * builder.go policyName: `ns[NS]-policy[NAME]-rule[N]`; CUSTOM ones prefixed `istio-ext-authz-`
 * (from 1.30 `istio-ext-authz-<provider>-`). `customProvider` undefined means not CUSTOM.
 */
export function rbacPolicyName(namespace: string, name: string, rule: number, customProvider?: string): string {
  const prefix = customProvider === undefined ? '' : customProvider ? `istio-ext-authz-${customProvider}-` : 'istio-ext-authz-';
  return `${prefix}ns[${namespace}]-policy[${name}]-rule[${rule}]`;
}

/** Where one generated RBAC policy came from: the Istio rule, by its Envoy and its Istio name. */
export interface RuleOrigin {
  /** The policy name in the RBAC config. */
  envoyName: string;
  /** `ns[NS]-policy[NAME]-rule[N]`. */
  istioName: string;
  /** istiod skipped it (a nil rule, or one it could not translate). */
  skipped?: string;
  fields?: PolicyFields;
  hasFrom: boolean;
  hasTo: boolean;
}

/** One AuthorizationPolicy as translated: its rules' origins in order (none for a policy without rules). */
export interface AuthzOrigin {
  action: AuthorizationPolicy['action'];
  /** "namespace/name". */
  policy: string;
  provider?: string;
  dryRun: boolean;
  rules: RuleOrigin[];
}

/** The rules of one action: enforced and dry-run (shadow) policies by name. */
export interface BuiltRbac {
  rules: Json | undefined;
  shadowRules: Json | undefined;
  /** Rules istiod skipped, with why (its logger's errors). */
  skipped: string[];
  origins: AuthzOrigin[];
}

/** Builder.build for one action's policies (ALLOW, DENY, AUDIT as LOG; CUSTOM as DENY, named for its provider). */
export function buildRbac(policies: readonly AuthorizationPolicy[], action: 'ALLOW' | 'DENY' | 'LOG', nsOf: (p: AuthorizationPolicy) => string, customProvider?: string): BuiltRbac {
  const enforce: Json = {};
  const shadow: Json = {};
  const skipped: string[] = [];
  let hasEnforce = false;
  let hasShadow = false;
  const origins: AuthzOrigin[] = [];
  for (const p of policies) {
    const target = p.dryRun ? shadow : enforce;
    if (p.dryRun) hasShadow = true;
    else hasEnforce = true;
    const ns = nsOf(p);
    const rules: RuleOrigin[] = [];
    origins.push({ action: p.action, policy: `${ns}/${p.name}`, ...(p.provider ? { provider: p.provider } : {}), dryRun: p.dryRun, rules });
    p.rules.forEach((rule, i) => {
      const name = rbacPolicyName(ns, p.name, i, customProvider);
      const origin = { envoyName: name, istioName: rbacPolicyName(ns, p.name, i), hasFrom: (rule?.from?.length ?? 0) > 0, hasTo: (rule?.to?.length ?? 0) > 0 };
      if (!rule) {
        skipped.push(`skipped nil rule ${name}`);
        rules.push({ ...origin, skipped: 'nil' });
        return;
      }
      const g = generatePolicy(rule, ns);
      if (g.error) {
        skipped.push(`skipped invalid rule ${name}: ${g.error}`);
        rules.push({ ...origin, skipped: g.error });
      } else {
        target[name] = g.policy;
        rules.push({ ...origin, fields: g.fields });
      }
    });
    if (p.rules.length === 0) target[rbacPolicyName(ns, p.name, 0, customProvider)] = MATCH_NEVER;
  }
  const wrap = (policiesByName: Json): Json => (action === 'ALLOW' ? { policies: policiesByName } : { action, policies: policiesByName });
  return { rules: hasEnforce ? wrap(enforce) : undefined, shadowRules: hasShadow ? wrap(shadow) : undefined, skipped, origins };
}
