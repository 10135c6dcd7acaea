import { describe, expect, it } from 'vitest';
import { evaluate } from '../../mesh/evaluate.js';
import { namespaceMatches, pathTemplateMatches, serviceAccountMatches } from '../../mesh/istio/match.js';
import { loadPolicyObjects } from '../../mesh/policies.js';
import { NOW, WORKLOAD } from './cases.js';

const peer = (ns: string, sa: string, td = 'cluster.local') => `spiffe://${td}/ns/${ns}/sa/${sa}`;

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
    const worst = Math.max(
      fastest(() => namespaceMatches('a*a*a*a*b', long)),
      fastest(() => namespaceMatches('(a+)+b', long)),
      fastest(() => serviceAccountMatches('a', 'y', long)),
      fastest(() => namespaceMatches('a/ns/a/ns/b', long)),
      fastest(() => pathTemplateMatches('/{**}/{*}/b/{**}/c', long)),
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
