import { describe, expect, it } from 'vitest';
import { compileSidecar, enforce } from '../../mesh/envoy/enforce.js';
import type { TraceEvent } from '../../mesh/envoy/events.js';
import { UnsupportedRegexError, compileRegex } from '../../mesh/envoy/regex.js';
import { loadPolicyObjects } from '../../mesh/istio/policies.js';
import { translateWorkload } from '../../mesh/translate/index.js';
import { ISS, NOW, WORKLOAD, createCtx } from './cases.js';

/**
 * The data plane on its own: mesh/envoy runs the SidecarConfig mesh/translate wrote and reports
 * what each filter did as events (the explanation is built from these, not from the policies).
 */

describe("safe_regex on the automaton (RE2's FullMatch)", () => {
  it("matches the shapes istiod writes, as whole values", () => {
    const ns = compileRegex('.*/ns/jwt\\-suite/.*');
    expect(ns('spiffe://cluster.local/ns/jwt-suite/sa/a')).toBe(true);
    expect(ns('spiffe://cluster.local/ns/jwt-suitex/sa/a')).toBe(false);
    const sa = compileRegex('spiffe://.+/ns/jwt\\-suite/(.+/|)sa/servicea(/.+)?');
    expect(sa('spiffe://cluster.local/ns/jwt-suite/sa/servicea')).toBe(true);
    expect(sa('spiffe://cluster.local/ns/jwt-suite/extra/sa/servicea/more')).toBe(true);
    expect(sa('spiffe://cluster.local/ns/jwt-suite/sa/serviceab')).toBe(false);
    expect(compileRegex('.+')('')).toBe(false);
    expect(compileRegex('a|b')('b')).toBe(true);
    expect(compileRegex('(?:ab)+')('ababab')).toBe(true);
    expect(compileRegex('(?:ab)+')('aba')).toBe(false);
    // uri_template segments: one or more characters but "/".
    expect(compileRegex('/a/[^/]+/c')('/a/b/c')).toBe(true);
    expect(compileRegex('/a/[^/]+/c')('/a/b/d/c')).toBe(false);
    expect(compileRegex('/a/[^/]+/c')('/a//c')).toBe(false);
  });

  it('a quoted meta character is a literal', () => {
    expect(compileRegex('\\(a\\+\\)\\+b')('(a+)+b')).toBe(true);
    expect(compileRegex('\\(a\\+\\)\\+b')('aaab')).toBe(false);
  });

  it('refuses syntax it does not run, when the config is compiled', () => {
    for (const bad of ['[a-z]', '[^ab]', 'a{2}', '^a', '(?i)a', '(a', 'a)', '\\d', 'a**']) expect(() => compileRegex(bad), bad).toThrow(UnsupportedRegexError);
  });
});

describe('enforce emits what each filter did', () => {
  it('jwt_authn then RBAC: the events name the provider, the token location and the matching policy', async () => {
    const ctx = await createCtx();
    const policies = loadPolicyObjects(
      [
        { apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'ra', namespace: 'jwt-suite' }, spec: { jwtRules: [{ issuer: ISS, jwks: ctx.jwks(ctx.rs) }] } },
        { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'allow', namespace: 'jwt-suite' }, spec: { rules: [{ from: [{ source: { requestPrincipals: [`${ISS}/servicea`] } }] }] } },
      ],
      'test',
    );
    const sidecar = compileSidecar(translateWorkload({ policies, workload: WORKLOAD }));
    const token = await ctx.token('servicea');
    const run = await enforce(sidecar, { method: 'GET', path: '/a/../b', headers: { host: 'serviceb', authorization: `Bearer ${token}` } }, { now: NOW, extAuthz: () => 'allow' });
    expect(run.status).toBe(200);
    expect(run.upstreamPath).toBe('/b');
    expect(run.upstreamHeaders.authorization).toBeUndefined();
    const kinds = run.events.map((e) => e.kind);
    expect(kinds).toEqual(['path-normalized', 'jwt-start', 'jwt-valid', 'jwt-token-removed', 'jwt-done', 'rbac']);
    const valid = run.events.find((e): e is Extract<TraceEvent, { kind: 'jwt-valid' }> => e.kind === 'jwt-valid')!;
    expect(valid).toMatchObject({ provider: 'origins-0', location: { kind: 'header', name: 'authorization', prefix: 'Bearer ' }, iss: ISS, keyKid: 'rs-1' });
    const rbac = run.events.at(-1) as Extract<TraceEvent, { kind: 'rbac' }>;
    expect(rbac).toMatchObject({ action: 'ALLOW', shadow: false, effective: 'ns[jwt-suite]-policy[allow]-rule[0]' });

    const other = await enforce(sidecar, { method: 'GET', path: '/', headers: { host: 'serviceb', authorization: `Bearer ${await ctx.token('servicec')}` } }, { now: NOW, extAuthz: () => 'allow' });
    expect(other).toMatchObject({ status: 403, body: 'RBAC: access denied', decidedAt: 1 });
    const refused = other.events.at(-1) as Extract<TraceEvent, { kind: 'rbac' }>;
    expect(refused.effective).toBeUndefined();
    expect(refused.policies[0]!.principals[0]!.entries).toEqual([{ ok: false, hit: undefined }]);
  });
});
