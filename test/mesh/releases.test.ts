import { beforeAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../mesh/evaluate.js';
import { DEFAULT_ISTIO, RELEASE_BEHAVIOURS, release, releaseProblem } from '../../mesh/istio/releases.js';
import { loadPolicyObjects } from '../../mesh/istio/policies.js';
import { runScript } from '../helpers/process.js';
import { ISS, NOW, WORKLOAD, createCtx, type Ctx } from './cases.js';

/** The release table and the three ways to choose a release: evaluate, POST /mesh/evaluate, the command. */

let ctx: Ctx;
beforeAll(async () => {
  ctx = await createCtx();
});

const unfetchable = () =>
  loadPolicyObjects([{ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'remote', namespace: 'jwt-suite' }, spec: { jwtRules: [{ issuer: ISS, jwksUri: 'https://jwks.unreachable.invalid/' }] } }], 't');

describe('Istio releases', () => {
  it('each row of the table names its upstream source and a release inside or before the modelled range', () => {
    for (const [name, row] of Object.entries(RELEASE_BEHAVIOURS)) {
      expect(row.source, name).toMatch(/^(istio\/istio|envoyproxy\/envoy) \S+\.(go|cc)/);
      expect(row.since, name).toMatch(/^1\.\d+(\.\d+)?$/);
    }
  });

  it('a release is modelled from its patch on: 1.28.4 has the fake JWKS, 1.28.5 and 1.29.1 the public-only one, 1.29.0 not', () => {
    expect(release('1.28.4').has.publicOnlyJwksFallback).toBe(false);
    expect(release('1.28.5').has.publicOnlyJwksFallback).toBe(true);
    expect(release('1.29.0').has.publicOnlyJwksFallback).toBe(false);
    expect(release('1.29.1').has.publicOnlyJwksFallback).toBe(true);
    expect(release('1.30').has.customProviderInName).toBe(true);
    expect(release('1.29.6').has.customProviderInName).toBe(false);
    expect(release().version).toBe(DEFAULT_ISTIO);
  });

  it('releases outside 1.24..newest and malformed versions are refused with a sentence', () => {
    expect(releaseProblem('1.23')).toMatch(/not modelled/);
    expect(releaseProblem('latest')).toMatch(/not an Istio release/);
    expect(releaseProblem('1.24')).toBeUndefined();
  });

  it('the explanation says which release it modelled, and the fallback JWKS is the one of that release', async () => {
    const req = { method: 'GET', path: '/', headers: { host: 'h', authorization: `Bearer ${await ctx.token('servicea')}` } };
    const old = await evaluate({ policies: unfetchable(), request: req, now: NOW, workload: WORKLOAD, istio: '1.28' });
    const now = await evaluate({ policies: unfetchable(), request: req, now: NOW, workload: WORKLOAD });
    expect(old.istio).toBe('1.28');
    expect(old.steps.join('\n')).toContain('modelling Istio 1.28 (its sidecar runs Envoy 1.36)');
    expect(old.steps.join('\n')).toContain('its fake JWKS');
    expect(now.istio).toBe(DEFAULT_ISTIO);
    expect(now.steps.join('\n')).toContain('its public-only JWKS');
    for (const v of [old, now]) expect([v.status, v.body]).toEqual([401, 'Jwt verification fails']);
  });

  it('a list claim goes to its header as base64 JSON in every modelled release (Envoy 1.29 brought it; Istio 1.24 runs Envoy 1.32)', async () => {
    const policies = loadPolicyObjects(
      [{ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'out', namespace: 'jwt-suite' }, spec: { jwtRules: [{ issuer: ISS, jwks: ctx.jwks(ctx.rs), outputClaimToHeaders: [{ header: 'x-groups', claim: 'groups' }] }] } }],
      't',
    );
    const req = { method: 'GET', path: '/', headers: { host: 'h', authorization: `Bearer ${await ctx.token('servicea', { groups: ['a', 'b'] })}` } };
    for (const istio of ['1.24', '1.27', '1.30']) {
      const v = await evaluate({ policies, request: req, now: NOW, workload: WORKLOAD, istio });
      expect(v.upstreamHeaders['x-groups'], istio).toBe(Buffer.from('["a","b"]').toString('base64'));
    }
  });

});

describe('--istio on the command line', () => {
  it('a release that is not modelled exits 2 naming --istio', async () => {
    const out = await runScript('mesh/cli.ts', ['explain', '--policies', 'k8s/istio', '--istio', '1.9']);
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('--istio: Istio 1.9 is not modelled (modelled: 1.24 to');
  });
});
