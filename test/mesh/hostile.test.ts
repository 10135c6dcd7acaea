import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Express } from 'express';
import type { MeshRequest } from '../../mesh/envoy/request.js';
import type { RuleSpec } from '../../mesh/istio/policies.js';
import { makeFactory } from '../factory/harness.js';
import { compiledRule } from './rbac-rule.js';

/** Policies and requests built to make a backtracking regexp engine run for minutes. */

const peer = (principal: string): MeshRequest => ({ method: 'GET', path: '/', headers: { host: 'h' }, sourcePrincipal: principal });
const from = (source: Record<string, string[]>): RuleSpec => ({ from: [{ source }] }) as RuleSpec;

const ruleMatches = (rule: RuleSpec, req: MeshRequest, namespace: string) => compiledRule(rule, namespace)(req);

/** The fastest of twenty runs, in ms: a machine busy with other work (and the JIT warming up) only slows some runs down. */
function fastestMs(run: () => void): number {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 20; i += 1) {
    const start = performance.now();
    run();
    best = Math.min(best, performance.now() - start);
  }
  return best;
}

const HOSTILE = ['(a+)+b', '(', '[', '*', '*a*a*a*a*a*a*a*a*', 'a{1,99999}', '\\', '(?<x>)', '.*.*.*.*=', 'jwt-*'];

describe('no policy or request value is a RegExp', () => {
  it('namespaces keep Istio\'s meaning: * is any run, everything else literal', () => {
    const req = peer('cluster.local/ns/jwt-suite/sa/servicea');
    expect(ruleMatches(from({ namespaces: ['jwt-suite'] }), req, 'x').ok).toBe(true);
    expect(ruleMatches(from({ namespaces: ['jwt-*'] }), req, 'x').ok).toBe(true);
    expect(ruleMatches(from({ namespaces: ['*-suite'] }), req, 'x').ok).toBe(true);
    expect(ruleMatches(from({ namespaces: ['jwt'] }), req, 'x').ok).toBe(false);
    expect(ruleMatches(from({ namespaces: ['jwt.suite'] }), peer('cluster.local/ns/jwt-suite/sa/a'), 'x').ok).toBe(false);
    expect(ruleMatches(from({ namespaces: ['('] }), peer('cluster.local/ns/(/sa/a'), 'x').ok).toBe(true);
  });

  it('serviceAccounts keep their meaning with literal names', () => {
    const rule = from({ serviceAccounts: ['jwt-suite/servicea'] });
    expect(ruleMatches(rule, peer('cluster.local/ns/jwt-suite/sa/servicea'), 'x').ok).toBe(true);
    expect(ruleMatches(rule, peer('cluster.local/ns/jwt-suite/extra/sa/servicea/more'), 'x').ok).toBe(true);
    expect(ruleMatches(rule, peer('cluster.local/ns/jwt-suite/sa/serviceab'), 'x').ok).toBe(false);
    expect(ruleMatches(from({ serviceAccounts: ['jwt.suite/service.'] }), peer('cluster.local/ns/jwtXsuite/sa/serviceX'), 'x').ok).toBe(false);
  });

  it('path templates keep {*} one segment and {**} any, and stay linear on a path of 5,000 slashes', () => {
    const to = (path: string): RuleSpec => ({ to: [{ operation: { paths: [path] } }] }) as RuleSpec;
    const at = (path: string): MeshRequest => ({ method: 'GET', path, headers: { host: 'h' } });
    expect(ruleMatches(to('/a/{*}/c'), at('/a/b/c'), 'x').ok).toBe(true);
    expect(ruleMatches(to('/a/{*}/c'), at('/a/b/d/c'), 'x').ok).toBe(false);
    expect(ruleMatches(to('/a/{**}'), at('/a/b/d/c'), 'x').ok).toBe(true);
    expect(ruleMatches(to('/a.{*}'), at('/aX.b'), 'x').ok).toBe(false);
    const slashes = '/'.repeat(5000);
    const templated = compiledRule(to('/{**}/{**}/{**}/x'), 'x');
    expect(fastestMs(() => templated(at(slashes)))).toBeLessThan(5);
  });

  it.each(HOSTILE)('a 10 KB principal against %s in every source field decides in well under 5 ms', (pattern) => {
    const req = peer(`cluster.local/ns/${'a'.repeat(10_240)}`);
    for (const field of ['namespaces', 'notNamespaces', 'principals', 'serviceAccounts', 'requestPrincipals']) {
      // Compiled once, as the sidecar holds it; what is timed is one request's matching.
      const decide = compiledRule(from({ [field]: [pattern] }), 'x');
      expect(fastestMs(() => decide(req))).toBeLessThan(5);
    }
  });
});

describe('POST /mesh/evaluate with hostile policies', () => {
  let app: Express;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    const f = await makeFactory();
    app = f.app;
    cleanup = f.cleanup;
  });
  afterAll(() => cleanup());

  const policy = (source: string) =>
    `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: jwt-suite}\nspec:\n  rules:\n  - from:\n    - source:\n        ${source}\n`;
  const evaluate = (yaml: string, sourcePrincipal = 'cluster.local/ns/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/sa/x') =>
    request(app).post('/mesh/evaluate').send({ yaml, request: { method: 'GET', path: '/', sourcePrincipal } });

  it('namespaces ["(a+)+b"] with a 30-character principal answers 200 at once: the rule does not match', async () => {
    const res = await evaluate(policy('namespaces: ["(a+)+b"]'));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.status).toBe(403);
  });

  it('namespaces ["("] answers 200, not 500', async () => {
    const res = await evaluate(policy('namespaces: ["("]'));
    expect(res.status).toBe(200);
    expect(res.body.status).toBe(403);
  });

  it('YAML with an unresolved alias answers 400 invalid_policy naming it', async () => {
    const res = await evaluate('apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: *missing\n');
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.error.code).toBe('invalid_policy');
    expect(res.body.error.message).toMatch(/Unresolved alias/);
  });

  it('a YAML alias bomb answers 400 invalid_policy before it expands', async () => {
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]', ...['b', 'c', 'd', 'e', 'f', 'g', 'h'].map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefg'[i]}`).join(',')}]`)].join('\n');
    const res = await evaluate(`${bomb}\n`);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_policy');
    expect(res.body.error.message).toMatch(/alias/i);
  });
});
