import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { renderYaml } from '../../lib/k8s.js';
import { buildMeshRules, MeshRulesError, publicJwks } from '../../mesh/istio/rules.js';
import { loadPolicyObjects } from '../../mesh/istio/policies.js';
import { parseMeshRulesArgs, renderMeshRules, runCommand, USAGE } from '../../scripts/mesh-rules.js';
import { ROOT, runScript } from '../helpers/process.js';
import { validateObject } from './manifests.js';
import type { K8sObject } from './kustomize.js';
import type { IstioPolicy } from './workloads.js';

const parse = (yaml: string) => parseAllDocuments(yaml).map((d) => d.toJS() as IstioPolicy);

async function run(argv: string[]): Promise<IstioPolicy[]> {
  const request = parseMeshRulesArgs(argv);
  if (request === 'help') throw new Error('unexpected help');
  return parse(await renderMeshRules(request));
}

/** Runs the command in this process and collects what it writes. */
async function command(argv: string[]) {
  let out = '';
  let err = '';
  const status = await runCommand(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { status, out, err };
}

describe('mesh-rules: the generated rules', () => {
  it('--key servicea --audience serviceb prints a RequestAuthentication and an AuthorizationPolicy that validate', async () => {
    const objects = await run(['--key', 'servicea', '--audience', 'serviceb']);
    expect(objects.map((o) => o.kind)).toEqual(['RequestAuthentication', 'AuthorizationPolicy']);
    for (const o of objects) expect(() => validateObject(o as K8sObject)).not.toThrow();
    const [ra, ap] = objects as [IstioPolicy, IstioPolicy];
    expect(ra.metadata).toMatchObject({ name: 'serviceb-jwt', namespace: 'jwt-suite' });
    expect(ra.spec).toEqual({
      selector: { matchLabels: { app: 'serviceb' } },
      jwtRules: [{ issuer: 'https://jwt-factory/', jwksUri: 'http://jwt-factory.jwt-suite.svc.cluster.local:5555/keys/servicea/jwks.json', audiences: ['serviceb'], forwardOriginalToken: true }],
    });
    expect(ap.spec).toEqual({
      selector: { matchLabels: { app: 'serviceb' } },
      action: 'ALLOW',
      rules: [{ from: [{ source: { principals: ['cluster.local/ns/jwt-suite/sa/servicea'], requestPrincipals: ['https://jwt-factory//servicea'] } }] }],
    });
  });

  it('several audiences without --workload give one pair per receiving workload', async () => {
    const objects = await run(['--key', 'servicea', '--audience', 'serviceb', '--audience', 'servicec']);
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      'RequestAuthentication/serviceb-jwt',
      'AuthorizationPolicy/serviceb-allow-servicea',
      'RequestAuthentication/servicec-jwt',
      'AuthorizationPolicy/servicec-allow-servicea',
    ]);
  });

  it('--workload gives one pair that accepts every audience; --issuer, --namespace, --factory-url and --port follow through', async () => {
    const objects = await run([
      '--key', 'servicea', '--audience', 'api://orders', '--audience', 'orders', '--workload', 'orders',
      '--issuer', 'https://issuer.example/', '--namespace', 'shop', '--factory-url', 'http://factory.shop:8080/', '--port', '8080',
    ]);
    for (const o of objects) expect(() => validateObject(o as K8sObject)).not.toThrow();
    const [ra, ap] = objects as [IstioPolicy, IstioPolicy];
    expect(ra.metadata.namespace).toBe('shop');
    expect(ra.spec.jwtRules[0]).toMatchObject({ issuer: 'https://issuer.example/', jwksUri: 'http://factory.shop:8080/keys/servicea/jwks.json', audiences: ['api://orders', 'orders'] });
    expect(ap.spec.rules[0]).toEqual({
      from: [{ source: { principals: ['cluster.local/ns/shop/sa/servicea'], requestPrincipals: ['https://issuer.example//servicea'] } }],
      to: [{ operation: { ports: ['8080'] } }],
    });
  });

  it('renders one object per YAML document with a comment header', () => {
    const yaml = renderYaml(buildMeshRules({ key: 'servicea', audiences: ['serviceb'] }), 'line one\nline two');
    expect(yaml.startsWith('# line one\n# line two\n')).toBe(true);
    expect(parseAllDocuments(yaml)).toHaveLength(2);
  });
});

describe('mesh-rules: inline keys', () => {
  const rsa = { kty: 'RSA', n: 'sXch', e: 'AQAB', kid: 'k1', alg: 'RS256', use: 'sig' };

  it('keeps only the public members of every key', () => {
    expect(publicJwks({ keys: [{ ...rsa, d: 'secret', p: 'x', q: 'y', dp: 'a', dq: 'b', qi: 'c', x5u: 'https://evil/' }] })).toEqual({ keys: [rsa] });
    expect(publicJwks({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'abc', d: 'secret', kid: 'k2' }] })).toEqual({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'abc', kid: 'k2' }] });
  });

  it.each([
    ['a symmetric key', { keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'h' }] }, /symmetric/],
    ['a key without kid', { keys: [{ kty: 'RSA', n: 'x', e: 'AQAB' }] }, /no kid/],
    ['a key missing a public member', { keys: [{ kty: 'EC', crv: 'P-256', x: 'a', kid: 'e' }] }, /misses its public member "y"/],
    ['an empty set', { keys: [] }, /holds no key/],
    ['something that is not a JWKS', { foo: 1 }, /no "keys" array/],
  ])('refuses %s', (_what, input, message) => {
    expect(() => publicJwks(input)).toThrow(message);
  });

  it('inlines jwks as a JSON string and drops jwksUri', () => {
    const [ra] = buildMeshRules({ key: 'servicea', audiences: ['serviceb'], jwks: { keys: [rsa] } });
    if (ra?.kind !== 'RequestAuthentication') throw new Error('expected the RequestAuthentication first');
    expect(ra.spec.jwtRules).toEqual([{ issuer: 'https://jwt-factory/', jwks: JSON.stringify({ keys: [rsa] }), audiences: ['serviceb'], forwardOriginalToken: true }]);
    expect(() => validateObject(ra as unknown as K8sObject)).not.toThrow();
  });
});

describe('mesh-rules and the engine share one CRD type', () => {
  it("its objects load through the engine's own schemas, field for field", () => {
    const objects = buildMeshRules({ key: 'servicea', audiences: ['serviceb', 'servicec'], port: 3001, userKey: 'oidc', userAudiences: ['webui'] });
    const loaded = loadPolicyObjects(objects, 'mesh-rules');
    expect(loaded.map((p) => [p.kind, p.name, p.namespace, p.matchLabels])).toEqual(objects.map((o) => [o.kind, o.metadata.name, o.metadata.namespace, o.spec.selector?.matchLabels]));
    loaded.forEach((p, i) => {
      const o = objects[i]!;
      if (p.kind === 'RequestAuthentication' && o.kind === 'RequestAuthentication') expect(p.jwtRules).toEqual(o.spec.jwtRules);
      else if (p.kind === 'AuthorizationPolicy' && o.kind === 'AuthorizationPolicy') expect([p.action, p.rules]).toEqual([o.spec.action, o.spec.rules]);
      else throw new Error(`object ${i} changed kind`);
    });
  });
});

describe('mesh-rules: flags', () => {
  it.each([
    [['--audience', 'serviceb'], /--key is required/],
    [['--key', 'servicea'], /at least one --audience/],
    [['--key', 'servicea', '--audiance', 'serviceb'], /Unknown option '--audiance'/],
    [['--key', 'servicea', '--audience'], /--audience/],
    [['--key', '../etc', '--audience', 'serviceb'], /--key "..\/etc" is not a keyId/],
    [['--key', 'ServiceA', '--audience', 'serviceb'], /service account name/],
    [['--key', 'servicea', '--audience', 'Service B'], /also names the receiving workload/],
    [['--key', 'servicea', '--audience', 'serviceb', '--namespace', 'Bad_NS'], /--namespace "Bad_NS"/],
    [['--key', 'servicea', '--audience', 'serviceb', '--factory-url', 'jwt-factory:5555'], /--factory-url must be http/],
    [['--key', 'servicea', '--audience', 'serviceb', '--factory-url', 'not a url'], /is not an absolute URL/],
    [['--key', 'servicea', '--audience', 'serviceb', '--port', '70000'], /--port 70000/],
    [['--key', 'servicea', '--audience', 'serviceb', '--port', 'http'], /--port "http"/],
    [['--key', 'servicea', '--audience', 'serviceb', '--keys-dir', 'keys'], /--keys-dir only goes with --inline-jwks/],
    [['--key', 'servicea', '--audience', 'serviceb', '--inline-jwks', '--keys-dir', 'k', '--jwks-file', 'f'], /either --keys-dir or --jwks-file/],
    [['--key', 'servicea', '--audience', 'serviceb', 'extra'], /Unexpected argument 'extra'/],
  ])('%j is refused with a sentence that names the flag', (argv, message) => {
    expect(() => parseMeshRulesArgs(argv as string[])).toThrow(MeshRulesError);
    expect(() => parseMeshRulesArgs(argv as string[])).toThrow(message);
  });

  it('--help asks for the usage text, which lists every flag', () => {
    expect(parseMeshRulesArgs(['--key', 'x', '--help'])).toBe('help');
    for (const flag of ['--key', '--audience', '--workload', '--issuer', '--namespace', '--factory-url', '--port', '--inline-jwks', '--keys-dir', '--jwks-file', '--help']) expect(USAGE).toContain(flag);
  });

  it('the command prints YAML and exits 0 (a real process, as npm run mesh-rules starts it)', async () => {
    const ok = await runScript('scripts/mesh-rules.ts', ['--key', 'servicea', '--audience', 'serviceb']);
    expect(ok.code).toBe(0);
    expect(parse(ok.stdout).map((o) => o.kind)).toEqual(['RequestAuthentication', 'AuthorizationPolicy']);
  });

  it('bad flags exit 2 with the sentence on stderr; an unreachable factory exits 1', async () => {
    const bad = await command(['--key', 'servicea', '--audiance', 'serviceb']);
    expect([bad.status, bad.out]).toEqual([2, '']);
    expect(bad.err).toMatch(/^mesh-rules: Unknown option '--audiance'\nRun npm run mesh-rules -- --help/);
    // Port 9 (discard) on loopback: nothing listens there in a test run.
    const down = await command(['--key', 'servicea', '--audience', 'serviceb', '--inline-jwks', '--factory-url', 'http://127.0.0.1:9']);
    expect([down.status, down.out]).toEqual([1, '']);
    expect(down.err).toMatch(/cannot fetch http:\/\/127\.0\.0\.1:9\/keys\/servicea\/jwks\.json/);
    const help = await command(['--help']);
    expect([help.status, help.out]).toEqual([0, `${USAGE}\n`]);
  });

  it('a --jwks-file that cannot be read is an input error (exit 1), not a usage error', async () => {
    const request = parseMeshRulesArgs(['--key', 'servicea', '--audience', 'serviceb', '--jwks-file', path.join(ROOT, 'no-such-file.json')]);
    await expect(renderMeshRules(request as Exclude<typeof request, 'help'>)).rejects.toThrow(/cannot read --jwks-file/);
  });
});
