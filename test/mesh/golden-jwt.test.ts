import { describe, expect, it } from 'vitest';
import { PUBLIC_ONLY_JWKS, jwksText, jwtAuthnConfig, jwtProviders, type TranslatedRule } from '../../mesh/translate/index.js';
import { release } from '../../mesh/istio/releases.js';
import { loadPolicyObjects, type JwtRuleSpec, type RequestAuthentication } from '../../mesh/istio/policies.js';

/**
 * The jwt_authn filter against istiod's own expectations: istio/istio
 * pilot/pkg/security/authn/policy_applier_test.go TestConvertToEnvoyJwtConfig and TestJwtFilter
 * (commit 86c9f01f), transcribed from Go structs into proto3 JSON. Their jwksUri points at a
 * mock server istiod fetches; here the fetched JWKS is the inline text "JWKS". Not transcribed:
 * the remote-jwks cases (PILOT_JWT_ENABLE_REMOTE_JWKS hybrid/envoy: Envoy fetches through a
 * cluster, which this suite never configures).
 */

const TYPE = 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
const optional = (name: string) => ({ requiresAny: { requirements: [{ providerName: name }, { allowMissing: {} }] } });
const rule = (requires: unknown) => [{ match: { prefix: '/' }, requires }];
const provider = (issuer: string, jwks: string, extra: Record<string, unknown> = {}, claims = ['permission', 'scope']) => ({
  issuer,
  localJwks: { inlineString: jwks },
  payloadInMetadata: 'payload',
  normalizePayloadInMetadata: { spaceDelimitedClaims: claims },
  ...extra,
});

/** Providers exactly in the order given (convertToEnvoyJwtConfig's input is already sorted by its caller). */
function providers(rules: JwtRuleSpec[], jwks: Record<string, unknown> = {}): TranslatedRule[] {
  return rules.map((r, i) => {
    const j = jwksText(r, jwks, release());
    return { name: `origins-${i}`, rule: r, policy: 'foo/p', jwks: j.text, fallback: j.fallback };
  });
}

const URI = 'http://mock/oauth2/v3/certs';

describe("jwt_authn as istiod writes it (policy_applier_test.go)", () => {
  it('Single JWT rule', () => {
    expect(jwtAuthnConfig(providers([{ issuer: 'https://secret.foo.com', jwksUri: URI }], { [URI]: 'JWKS' }))).toEqual({
      '@type': TYPE,
      rules: rule(optional('origins-0')),
      providers: { 'origins-0': provider('https://secret.foo.com', 'JWKS') },
      bypassCorsPreflight: true,
    });
  });

  it('Multiple JWT rule: any of the providers, or all of them optional', () => {
    expect(jwtAuthnConfig(providers([{ issuer: 'https://secret.foo.com', jwksUri: URI }, { issuer: 'https://secret.bar.com', jwks: 'jwks-inline-data' }], { [URI]: 'JWKS' }))).toEqual({
      '@type': TYPE,
      rules: rule({ requiresAny: { requirements: [{ providerName: 'origins-0' }, { providerName: 'origins-1' }, { requiresAll: { requirements: [optional('origins-0'), optional('origins-1')] } }] } }),
      providers: { 'origins-0': provider('https://secret.foo.com', 'JWKS'), 'origins-1': provider('https://secret.bar.com', 'jwks-inline-data') },
      bypassCorsPreflight: true,
    });
  });

  it('Unreachable Jwks URI: the public-only JWKS is inlined', () => {
    const config = jwtAuthnConfig(providers([{ issuer: 'https://secret.foo.com', jwksUri: 'http://site.not.exist' }]));
    expect(config.providers).toEqual({ 'origins-0': provider('https://secret.foo.com', PUBLIC_ONLY_JWKS) });
  });

  it('Single JWT policy with custom space delimited claims: the sorted union with permission and scope', () => {
    const config = jwtAuthnConfig(providers([{ issuer: 'https://secret.foo.com', jwksUri: URI, spaceDelimitedClaims: ['custom_scope', 'roles'] }], { [URI]: 'JWKS' }));
    expect(config.providers).toEqual({ 'origins-0': provider('https://secret.foo.com', 'JWKS', {}, ['custom_scope', 'permission', 'roles', 'scope']) });
  });

  it('Output claim to header, with the original token forwarded', () => {
    const config = jwtAuthnConfig(
      providers([{ issuer: 'https://secret.foo.com', jwksUri: URI, forwardOriginalToken: true, outputClaimToHeaders: [{ header: 'x-jwt-key1', claim: 'value1' }, { header: 'x-jwt-key2', claim: 'value2' }] }], { [URI]: 'JWKS' }),
    );
    expect(config.providers).toEqual({
      'origins-0': provider('https://secret.foo.com', 'JWKS', { forward: true, claimToHeaders: [{ headerName: 'x-jwt-key1', claimName: 'value1' }, { headerName: 'x-jwt-key2', claimName: 'value2' }] }),
    });
  });

  it('Output payload: forwardPayloadHeader', () => {
    const config = jwtAuthnConfig(providers([{ issuer: 'https://secret.foo.com', jwksUri: URI, forwardOriginalToken: true, outputPayloadToHeader: 'x-foo' }], { [URI]: 'JWKS' }));
    expect(config.providers).toEqual({ 'origins-0': provider('https://secret.foo.com', 'JWKS', { forward: true, forwardPayloadHeader: 'x-foo' }) });
  });

  it("newPolicyApplier's sort: the rules of every RequestAuthentication by issuer, then origins-N", () => {
    const ra = (name: string, issuer: string) => ({ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name, namespace: 'foo' }, spec: { jwtRules: [{ issuer, jwks: 'J' }] } });
    const policies = loadPolicyObjects([ra('a', 'https://secret.foo.com'), ra('b', 'https://secret.bar.com')], 't') as RequestAuthentication[];
    const sorted = jwtProviders(policies, { policies, defaultNamespace: 'foo' }, release());
    expect(sorted.map((p) => [p.name, p.rule.issuer])).toEqual([
      ['origins-0', 'https://secret.bar.com'],
      ['origins-1', 'https://secret.foo.com'],
    ]);
  });
});
