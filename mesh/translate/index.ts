import { suppliedJwks, type AuthorizationPolicy, type JwtRuleSpec, type MeshPolicy, type RequestAuthentication } from '../istio/policies.js';
import { release as releaseOf, type Release } from '../istio/releases.js';
import { whyNotInScope, type WorkloadRef } from '../istio/scope.js';
import { buildRbac, type AuthzOrigin, type Json } from './rbac.js';

/**
 * istiod's half: Istio objects + the workload + the Istio release → the HTTP filters of the
 * workload's inbound listener, as Envoy receives them (a `SidecarConfig`). Pure: JWKS arrive
 * as data; what istiod cannot fetch becomes the release's fallback JWKS.
 *
 * Sources: istio/istio pilot/pkg/networking/core/listener_builder.go (filter order: CUSTOM
 * ext_authz, jwt_authn, then AUDIT/DENY/ALLOW RBAC), pilot/pkg/security/authn/policy_applier.go
 * convertToEnvoyJwtConfig, pilot/pkg/model/jwks_resolver.go, pilot/pkg/security/authz/builder.
 */

export type { AuthzOrigin, FieldRef, Json, RuleOrigin } from './rbac.js';

/** One entry of the HTTP connection manager's http_filters. */
export interface HttpFilter {
  name: string;
  typedConfig: Json;
}

/** One jwt_authn provider and the jwtRule it came from. */
export interface ProviderOrigin {
  /** origins-N. */
  name: string;
  /** "namespace/name" of the RequestAuthentication. */
  policy: string;
  /** The index of the rule in its jwtRules. */
  rule: number;
  issuer?: string;
  /** istiod had no JWKS for it and inlined the release's fallback. */
  fallback: boolean;
  /** The jwksUri (or discovery URL) istiod would fetch. */
  uri: string;
}

/** Which policies reached the workload (istiod's per-proxy scoping). */
export interface ScopeOrigin {
  /** How many policies were given before scoping. */
  given: number;
  /** Those left out, each "Kind ns/name (why)". */
  skipped: string[];
  workload?: WorkloadRef;
  /** No workload was given, and some policy has a selector. */
  selectorsIgnored: boolean;
}

/**
 * Where each part of the config came from, so the explanation can speak of the user's objects:
 * the names Envoy sees (origins-N, ns[..]-policy[..]-rule[N]) mapped back to them.
 */
export interface Origins {
  scope: ScopeOrigin;
  providers: ProviderOrigin[];
  /** Every AuthorizationPolicy that applies, in the order given. */
  authz: AuthzOrigin[];
  /** The CUSTOM providers named, sorted. */
  customProviders: string[];
}

/** What the sidecar runs for one workload: its HTTP filters, in order, and istiod's notes. */
export interface SidecarConfig {
  release: Release;
  httpFilters: HttpFilter[];
  /** What istiod logged while translating (skipped rules, fallback JWKS). */
  notes: string[];
  origins: Origins;
}

export interface TranslateInput {
  /** The policies that apply to the workload (already scoped). */
  policies: readonly MeshPolicy[];
  /** JWKS documents keyed by jwksUri or issuer, as fetched (or supplied) for rules without inline `jwks`. */
  jwks?: Record<string, unknown>;
  /** The namespace of policies without one. */
  defaultNamespace: string;
  /** Istio release, default the newest modelled. */
  istio?: string;
}

/** The type URLs of the filters istiod writes. */
export const TYPE = {
  jwt: 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
  rbac: 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC',
  extAuthz: 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
} as const;

/** The cluster a CUSTOM provider's ext_authz calls; the sidecar harness points it at a real server. */
export function extAuthzCluster(provider: string): string {
  return `ext-authz|${provider}`;
}

/**
 * jwks_resolver.go FakeJwks (until the public-only JWKS replaced it): a fixed RSA key without
 * kid. istiod's constant also carries the private members; Envoy reads only kty, e and n, so
 * only those are kept here.
 */
export const FAKE_JWKS = JSON.stringify({
  keys: [
    {
      e: 'AQAB',
      kty: 'RSA',
      n: 'vqS7RN4b34i3_5YyhygtBe33gI6GK_0ldW8WMZaunS28T-WAzJOAoZ7E9Y0mHS8vcDES0eZIUpp6Ft9sRPhOlzQfo_7l-3DnaD9LxJVKdXjE1jugxfI9YX1qJpD9S9wRZxQIhPky9UzZDkpFh_KpL6pZUt4cbPtW0VCctjqvpI11yHNk4CEbzw-RRFLMJkLFJqgPa2JPzGZ-TqJdkSDQ7UtRiKzjRcWGnAdLsTq6WabDA1Fn1JVI9TWu-YDbLufDUDco46qyPgpxAqcRQG39cWZAQzMwNEZ-Yec_WiqDYqGTU6K8BBWeEIuMhiWfxGmtqX35rb9Qk_qeYDsqqT95Pw',
    },
  ],
});

/** jwks_resolver.go PublicOnlyJwks (1.29.1 on): an RSA public key whose private key was discarded, no kid. */
export const PUBLIC_ONLY_JWKS = JSON.stringify({
  keys: [
    {
      kty: 'RSA',
      e: 'AQAB',
      n: '0xObjM0UvS_oaazjpEYlAbwctEJ4L8pH3OuTb7qth7gUwqet-EzQB4dgFdvSdMgrLnSncQGRjpEYz3F3viIbH-3EN3TxSlPNviHxeOdyiBVfumN8dMxbLvVJUpfNOnvmMxJcl-8NNjAwcOjk4otSALaYgYYyOPyvKtgVdrQr-FoubWX4yrjxW-MJ2-7OBeepUUNOsVwGV23YX03sVkkyvY3otRflkBcY3_HKpBxJl9wk2GyOShN4_PNUF9-vwfnvOXMbCDX-w4PTef4geeb_GiT40YCKHTKMSPVanGRn5GExIWmki-mmqh94-mPTJyBR74ShspL3BxPZitDL574T1w',
    },
  ],
});

/** The JWKS text a rule ends up with: inline, supplied, else the release's fallback. */
export function jwksText(rule: JwtRuleSpec, supplied: Record<string, unknown> | undefined, rel: Release): { text: string; fallback: boolean } {
  // request_authentication.proto: "Only one of jwks_uri and jwks should be used. jwks_uri will be ignored if it does."
  if (rule.jwks !== undefined) return { text: rule.jwks, fallback: false };
  const doc = suppliedJwks(rule, supplied);
  if (doc !== undefined) return { text: typeof doc === 'string' ? doc : JSON.stringify(doc), fallback: false };
  return { text: rel.has.publicOnlyJwksFallback ? PUBLIC_ONLY_JWKS : FAKE_JWKS, fallback: true };
}

/** One jwt_authn provider with where it came from. */
export interface TranslatedRule {
  name: string;
  rule: JwtRuleSpec;
  policy: string;
  /** The index of the rule in its RequestAuthentication's jwtRules. */
  index?: number;
  jwks: string;
  fallback: boolean;
}

/** istiod merges every RequestAuthentication's jwtRules and sorts them by issuer (policy_applier.go). */
export function jwtProviders(reqAuthn: readonly RequestAuthentication[], input: TranslateInput, rel: Release): TranslatedRule[] {
  return reqAuthn
    .flatMap((p) => p.jwtRules.map((rule, index) => ({ rule, index, policy: `${p.namespace ?? input.defaultNamespace}/${p.name}`, ...jwksOf(rule, input, rel) })))
    .sort((a, b) => ((a.rule.issuer ?? '') < (b.rule.issuer ?? '') ? -1 : (a.rule.issuer ?? '') > (b.rule.issuer ?? '') ? 1 : 0))
    .map((r, i) => ({ name: `origins-${i}`, ...r }));
}

function jwksOf(rule: JwtRuleSpec, input: TranslateInput, rel: Release): { jwks: string; fallback: boolean } {
  const j = jwksText(rule, input.jwks, rel);
  return { jwks: j.text, fallback: j.fallback };
}

/** buildSpaceDelimitedClaims: permission and scope, or with the rule's own the sorted union of all. */
export function spaceDelimitedClaims(own: readonly string[] | undefined): string[] {
  if (own === undefined) return ['permission', 'scope'];
  return [...new Set([...own, 'permission', 'scope'])].sort();
}

/** convertToEnvoyJwtConfig: providers origins-N and the requirement any{P, allow_missing} (or the OR/AND tree). */
export function jwtAuthnConfig(providers: readonly TranslatedRule[]): Json {
  const byName: Json = {};
  for (const p of providers) {
    const r = p.rule;
    byName[p.name] = {
      ...(r.issuer ? { issuer: r.issuer } : {}),
      ...(r.audiences?.length ? { audiences: r.audiences } : {}),
      localJwks: { inlineString: p.jwks },
      ...(r.fromHeaders?.length ? { fromHeaders: r.fromHeaders.map((h) => ({ name: h.name, ...(h.prefix ? { valuePrefix: h.prefix } : {}) })) } : {}),
      ...(r.fromParams?.length ? { fromParams: r.fromParams } : {}),
      ...(r.fromCookies?.length ? { fromCookies: r.fromCookies } : {}),
      ...(r.forwardOriginalToken ? { forward: true } : {}),
      ...(r.outputPayloadToHeader ? { forwardPayloadHeader: r.outputPayloadToHeader } : {}),
      ...(r.outputClaimToHeaders?.length ? { claimToHeaders: r.outputClaimToHeaders.map((c) => ({ headerName: c.header, claimName: c.claim })) } : {}),
      payloadInMetadata: 'payload',
      normalizePayloadInMetadata: { spaceDelimitedClaims: spaceDelimitedClaims(r.spaceDelimitedClaims) },
    };
  }
  const optional = (name: string): Json => ({ requiresAny: { requirements: [{ providerName: name }, { allowMissing: {} }] } });
  const requires =
    providers.length === 1 ? optional(providers[0]!.name) : { requiresAny: { requirements: [...providers.map((p) => ({ providerName: p.name })), { requiresAll: { requirements: providers.map((p) => optional(p.name)) } }] } };
  return { '@type': TYPE.jwt, providers: byName, rules: [{ match: { prefix: '/' }, requires }], bypassCorsPreflight: true };
}

/** builder.go generateFilterMatcherForProvider: ext_authz runs only when the shadow RBAC matched a CUSTOM rule. */
function extAuthzConfig(provider: string, matchPrefix: string): Json {
  return {
    '@type': TYPE.extAuthz,
    httpService: { serverUri: { uri: `http://${provider}`, cluster: extAuthzCluster(provider), timeout: '10s' } },
    filterEnabledMetadata: { filter: 'envoy.filters.http.rbac', path: [{ key: 'istio_ext_authz_shadow_effective_policy_id' }], value: { stringMatch: { prefix: matchPrefix } } },
    transportApiVersion: 'V3',
  };
}

/** The translation of the policies that apply to one workload; see the module comment. */
export function translate(input: TranslateInput): SidecarConfig {
  const rel = releaseOf(input.istio);
  const notes: string[] = [];
  const nsOf = (p: MeshPolicy) => p.namespace ?? input.defaultNamespace;
  const reqAuthn = input.policies.filter((p): p is RequestAuthentication => p.kind === 'RequestAuthentication');
  const authz = input.policies.filter((p): p is AuthorizationPolicy => p.kind === 'AuthorizationPolicy');
  const filters: HttpFilter[] = [];

  // CUSTOM: a shadow RBAC per provider then its ext_authz; several providers (without istiod's
  // multi-provider flag) turn the CUSTOM rules into DENY rules instead (getBadCustomDenyRules).
  const custom = authz.filter((p) => p.action === 'CUSTOM');
  const providers = [...new Set(custom.map((p) => p.provider ?? ''))].sort();
  const customFilters: HttpFilter[] = [];
  const authzOrigins = new Map<AuthorizationPolicy, AuthzOrigin>();
  const keep = (ps: readonly AuthorizationPolicy[], origins: AuthzOrigin[]) => ps.forEach((p, i) => authzOrigins.set(p, origins[i]!));
  if (providers.length > 1) {
    notes.push(`CUSTOM policies name ${providers.length} providers (${providers.join(', ')}); istiod allows one per workload and turns their rules into DENY rules`);
    for (const provider of providers) {
      const mine = custom.filter((p) => (p.provider ?? '') === provider);
      const built = buildRbac(mine, 'DENY', nsOf, rel.has.customProviderInName ? provider : '');
      keep(mine, built.origins.map((o) => ({ ...o, rules: o.rules.map((r) => ({ ...r, envoyName: `${r.envoyName}-deny-due-to-bad-CUSTOM-action` })) })));
      const policies: Json = {};
      for (const [k, v] of Object.entries((built.rules?.policies ?? {}) as Json)) policies[`${k}-deny-due-to-bad-CUSTOM-action`] = v;
      customFilters.push({ name: 'envoy.filters.http.rbac', typedConfig: { '@type': TYPE.rbac, rules: { action: 'DENY', policies } } });
    }
  } else if (providers.length === 1) {
    const provider = providers[0]!;
    const built = buildRbac(custom, 'DENY', nsOf, rel.has.customProviderInName ? provider : '');
    keep(custom, built.origins);
    notes.push(...built.skipped);
    customFilters.push(
      { name: 'envoy.filters.http.rbac', typedConfig: { '@type': TYPE.rbac, ...(built.rules ? { shadowRules: built.rules } : {}), ...(built.shadowRules ? { rules: built.shadowRules } : {}), shadowRulesStatPrefix: 'istio_ext_authz_' } },
      { name: 'envoy.filters.http.ext_authz', typedConfig: extAuthzConfig(provider, rel.has.customProviderInName ? `istio-ext-authz-${provider}` : 'istio-ext-authz') },
    );
  }

  const jwt = jwtProviders(reqAuthn, input, rel);
  for (const p of jwt.filter((x) => x.fallback)) notes.push(`${p.policy}: istiod could not fetch ${p.rule.jwksUri ?? p.rule.issuer ?? ''} and inlined its fallback JWKS`);
  const jwtFilter: HttpFilter[] = jwt.length > 0 ? [{ name: 'envoy.filters.http.jwt_authn', typedConfig: jwtAuthnConfig(jwt) }] : [];

  filters.push(...(rel.has.customBeforeJwtAuthn ? [...customFilters, ...jwtFilter] : [...jwtFilter, ...customFilters]));
  for (const [action, rbacAction] of [
    ['AUDIT', 'LOG'],
    ['DENY', 'DENY'],
    ['ALLOW', 'ALLOW'],
  ] as const) {
    const ps = authz.filter((p) => p.action === action);
    if (ps.length === 0) continue;
    const built = buildRbac(ps, rbacAction, nsOf);
    keep(ps, built.origins);
    notes.push(...built.skipped);
    // builder.go shadowRuleStatPrefix reads the action of the shadow rules; without any, proto's
    // default action (ALLOW) gives istio_dry_run_allow_ even to a DENY filter.
    const shadowAction = built.shadowRules ? action : 'ALLOW';
    const prefix = shadowAction === 'ALLOW' ? 'istio_dry_run_allow_' : shadowAction === 'DENY' ? 'istio_dry_run_deny_' : '';
    filters.push({
      name: 'envoy.filters.http.rbac',
      typedConfig: { '@type': TYPE.rbac, ...(built.rules ? { rules: built.rules } : {}), ...(built.shadowRules ? { shadowRules: built.shadowRules } : {}), ...(prefix ? { shadowRulesStatPrefix: prefix } : {}) },
    });
  }
  const origins: Origins = {
    scope: { given: input.policies.length, skipped: [], selectorsIgnored: false },
    providers: jwt.map((p) => ({ name: p.name, policy: p.policy, rule: p.index ?? 0, ...(p.rule.issuer ? { issuer: p.rule.issuer } : {}), fallback: p.fallback, uri: p.rule.jwksUri ?? discoveryUrl(p.rule.issuer) })),
    authz: authz.flatMap((p) => authzOrigins.get(p) ?? []),
    customProviders: providers,
  };
  return { release: rel, httpFilters: filters, notes, origins };
}

/** The OpenID discovery document istiod reads for a rule without jwksUri. */
function discoveryUrl(issuer: string | undefined): string {
  return `${(issuer ?? '').replace(/\/$/, '')}/.well-known/openid-configuration`;
}

/** translate() for one workload: scopes the policies first (selectors, namespaces, targetRefs), as istiod does per proxy. */
export function translateWorkload(input: { policies: readonly MeshPolicy[]; jwks?: Record<string, unknown>; workload?: WorkloadRef; rootNamespace?: string; istio?: string }): SidecarConfig {
  const skipped: string[] = [];
  const policies = input.policies.filter((p) => {
    const why = whyNotInScope(p, input);
    if (why) skipped.push(`${p.kind} ${p.namespace ?? '(no namespace)'}/${p.name} (${why})`);
    return why === undefined;
  });
  const config = translate({ policies, jwks: input.jwks, defaultNamespace: input.workload?.namespace ?? 'default', istio: input.istio });
  const scope: ScopeOrigin = { given: input.policies.length, skipped, workload: input.workload, selectorsIgnored: !input.workload && input.policies.some((p) => p.matchLabels) };
  return { ...config, origins: { ...config.origins, scope } };
}
