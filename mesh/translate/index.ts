import { suppliedJwks, type AuthorizationPolicy, type JwtRuleSpec, type MeshPolicy, type RequestAuthentication } from '../policies.js';
import { release as releaseOf, type Release } from '../istio/releases.js';
import { whyNotInScope, type WorkloadRef } from '../istio/scope.js';
import { buildRbac, type Json } from './rbac.js';

/**
 * istiod's half: Istio objects + the workload + the Istio release → the HTTP filters of the
 * workload's inbound listener, as Envoy receives them (a `SidecarConfig`). Pure: JWKS arrive
 * as data; what istiod cannot fetch becomes the release's fallback JWKS.
 *
 * Sources: istio/istio pilot/pkg/networking/core/listener_builder.go (filter order: CUSTOM
 * ext_authz, jwt_authn, then AUDIT/DENY/ALLOW RBAC), pilot/pkg/security/authn/policy_applier.go
 * convertToEnvoyJwtConfig, pilot/pkg/model/jwks_resolver.go, pilot/pkg/security/authz/builder.
 */

export type { Json } from './rbac.js';

/** One entry of the HTTP connection manager's http_filters. */
export interface HttpFilter {
  name: string;
  typedConfig: Json;
}

/** What the sidecar runs for one workload: its HTTP filters, in order, and istiod's notes. */
export interface SidecarConfig {
  release: Release;
  httpFilters: HttpFilter[];
  /** What istiod logged while translating (skipped rules, fallback JWKS). */
  notes: string[];
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
  jwks: string;
  fallback: boolean;
}

/** istiod merges every RequestAuthentication's jwtRules and sorts them by issuer (policy_applier.go). */
export function jwtProviders(reqAuthn: readonly RequestAuthentication[], input: TranslateInput, rel: Release): TranslatedRule[] {
  return reqAuthn
    .flatMap((p) => p.jwtRules.map((rule) => ({ rule, policy: `${p.namespace ?? input.defaultNamespace}/${p.name}`, ...jwksOf(rule, input, rel) })))
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
  if (providers.length > 1) {
    notes.push(`CUSTOM policies name ${providers.length} providers (${providers.join(', ')}); istiod allows one per workload and turns their rules into DENY rules`);
    for (const provider of providers) {
      const built = buildRbac(custom.filter((p) => (p.provider ?? '') === provider), 'DENY', nsOf, rel.has.customProviderInName ? provider : '');
      const policies: Json = {};
      for (const [k, v] of Object.entries((built.rules?.policies ?? {}) as Json)) policies[`${k}-deny-due-to-bad-CUSTOM-action`] = v;
      customFilters.push({ name: 'envoy.filters.http.rbac', typedConfig: { '@type': TYPE.rbac, rules: { action: 'DENY', policies } } });
    }
  } else if (providers.length === 1) {
    const provider = providers[0]!;
    const built = buildRbac(custom, 'DENY', nsOf, rel.has.customProviderInName ? provider : '');
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
  return { release: rel, httpFilters: filters, notes };
}

/** translate() for one workload: scopes the policies first (selectors, namespaces, targetRefs), as istiod does per proxy. */
export function translateWorkload(input: { policies: readonly MeshPolicy[]; jwks?: Record<string, unknown>; workload?: WorkloadRef; rootNamespace?: string; istio?: string }): SidecarConfig {
  const policies = input.policies.filter((p) => whyNotInScope(p, input) === undefined);
  return translate({ policies, jwks: input.jwks, defaultNamespace: input.workload?.namespace ?? 'default', istio: input.istio });
}
