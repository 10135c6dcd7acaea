import { describe, expect, it } from 'vitest';
import { evaluate } from '../../mesh/evaluate.js';
import { loadPolicyObjects, type RuleSpec } from '../../mesh/istio/policies.js';
import { NOW, WORKLOAD } from './cases.js';
import { compiledRule } from './rbac-rule.js';

const peer = (ns: string, sa: string, td = 'cluster.local') => `spiffe://${td}/ns/${ns}/sa/${sa}`;

/** The rule istiod writes for a `from` field, compiled as the sidecar runs it; true when the peer identity matches. */
const bySource = (field: 'namespaces' | 'serviceAccounts', value: string, policyNamespace = 'x') => {
  const decide = compiledRule({ from: [{ source: { [field]: [value] } }] } as RuleSpec, policyNamespace);
  return (spiffe: string | undefined) => decide({ method: 'GET', path: '/', headers: { host: 'h' }, ...(spiffe ? { sourcePrincipal: spiffe } : {}) }).ok;
};
const namespaceMatches = (value: string, spiffe: string | undefined) => bySource('namespaces', value)(spiffe);
const serviceAccountMatches = (policyNamespace: string, value: string, spiffe: string | undefined) => bySource('serviceAccounts', value, policyNamespace)(spiffe);
const byPath = (pattern: string) => {
  const decide = compiledRule({ to: [{ operation: { paths: [pattern] } }] } as RuleSpec, 'x');
  return (path: string) => decide({ method: 'GET', path, headers: { host: 'h' } }).ok;
};
const pathTemplateMatches = (pattern: string, path: string) => byPath(pattern)(path);

/** The best of a few runs, in ms: one slow run on a shared machine is the machine, not the matcher. */
function fastest(fn: () => void, runs = 5): number {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

describe('Istio value patterns are matched as text, never as RegExps', () => {
  it('namespaces: "*" matches any text and everything else is literal', () => {
    expect(namespaceMatches('jwt-suite', peer('jwt-suite', 'servicea'))).toBe(true);
    expect(namespaceMatches('jwt-*', peer('jwt-suite', 'servicea'))).toBe(true);
    expect(namespaceMatches('*-suite', peer('jwt-suite', 'servicea'))).toBe(true);
    expect(namespaceMatches('jwt.suite', peer('jwt-suite', 'servicea'))).toBe(false);
    expect(namespaceMatches('(a+)+b', peer('aaab', 'x'))).toBe(false);
    expect(namespaceMatches('(a+)+b', peer('(a+)+b', 'x'))).toBe(true);
    expect(namespaceMatches('(', peer('(', 'x'))).toBe(true);
    expect(namespaceMatches('other', peer('jwt-suite', 'servicea'))).toBe(false);
    expect(namespaceMatches('jwt-suite', undefined)).toBe(false);
  });

  it('serviceAccounts: "ns/sa" or "sa" in the policy namespace, with the optional segments istiod allows', () => {
    expect(serviceAccountMatches('jwt-suite', 'servicea', peer('jwt-suite', 'servicea'))).toBe(true);
    expect(serviceAccountMatches('other', 'jwt-suite/servicea', peer('jwt-suite', 'servicea'))).toBe(true);
    expect(serviceAccountMatches('jwt-suite', 'servicea', 'spiffe://td/ns/jwt-suite/extra/sa/servicea/more')).toBe(true);
    expect(serviceAccountMatches('jwt-suite', 'servicea', peer('jwt-suite', 'serviceab'))).toBe(false);
    expect(serviceAccountMatches('jwt-suite', 'servicea', 'spiffe:///ns/jwt-suite/sa/servicea')).toBe(false);
    expect(serviceAccountMatches('jwt-suite', 's.a', peer('jwt-suite', 'sxa'))).toBe(false);
  });

  it('path templates: {*} is one non-empty segment, {**} any run of segments', () => {
    expect(pathTemplateMatches('/items/{*}/detail', '/items/42/detail')).toBe(true);
    expect(pathTemplateMatches('/items/{*}/detail', '/items/4/2/detail')).toBe(false);
    expect(pathTemplateMatches('/items/{*}/detail', '/items//detail')).toBe(false);
    expect(pathTemplateMatches('/{**}/end', '/a/b/c/end')).toBe(true);
    expect(pathTemplateMatches('/{**}/end', '/a/b/c/end/x')).toBe(false);
    expect(pathTemplateMatches('/a.b/{*}', '/axb/1')).toBe(false);
  });

  it('a 10 KB principal against any pattern shape is decided in under 5 ms', () => {
    const long = `spiffe://cluster.local/ns/${'a/ns/'.repeat(2048)}/sa/x`;
    expect(long.length).toBeGreaterThan(10_000);
    // Compiled once, as the sidecar holds them; each timing is one request's matching.
    const [stars, nested, account, literal, template] = [bySource('namespaces', 'a*a*a*a*b'), bySource('namespaces', '(a+)+b'), bySource('serviceAccounts', 'y', 'a'), bySource('namespaces', 'a/ns/a/ns/b'), byPath('/{**}/{*}/b/{**}/c')];
    const worst = Math.max(
      fastest(() => stars(long)),
      fastest(() => nested(long)),
      fastest(() => account(long)),
      fastest(() => literal(long)),
      fastest(() => template(long)),
    );
    expect(worst).toBeLessThan(5);
  });

  it('an AuthorizationPolicy with namespaces ["(a+)+b"] or ["("] is a literal value, decided at once', async () => {
    for (const ns of ['(a+)+b', '(']) {
      const policies = loadPolicyObjects(
        [{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'ns', namespace: 'jwt-suite' }, spec: { rules: [{ from: [{ source: { namespaces: [ns] } }] }] } }],
        'test',
      );
      const v = await evaluate({ policies, request: { method: 'GET', path: '/', headers: { host: 'h' }, sourcePrincipal: `cluster.local/ns/${'a'.repeat(30)}/sa/x` }, now: NOW, workload: WORKLOAD });
      expect(v.status).toBe(403);
      expect(v.body).toBe('RBAC: access denied');
    }
  });
});
