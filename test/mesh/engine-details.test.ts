import { exportJWK, generateKeyPair, generateSecret, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { evaluate, type EvaluateInput, type MeshRequest } from '../../mesh/evaluate.js';
import { parseJwt, sanitizeAudience, loadJwks } from '../../mesh/envoy/jwt_verify.js';
import { PolicyError, loadPolicyObjects, parsePolicyText } from '../../mesh/istio/policies.js';
import { resolveJwks, type Fetcher } from '../../mesh/sources.js';
import { ISS, NOW, NOW_S, WORKLOAD, createCtx, type Ctx } from './cases.js';

/**
 * Engine behaviour the shared table cannot carry through the gateway (mTLS identities, ports,
 * the CUSTOM provider's answer, key types, policy validation, JWKS discovery).
 */

let ctx: Ctx;
beforeAll(async () => {
  ctx = await createCtx();
});

const ap = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'jwt-suite' }, spec });
const ra = (jwtRules: Record<string, unknown>[]) => ({ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'ra', namespace: 'jwt-suite' }, spec: { jwtRules } });
const run = (objects: unknown[], request: MeshRequest, extra: Partial<EvaluateInput> = {}) =>
  evaluate({ policies: loadPolicyObjects(objects, 'test'), request, now: NOW, workload: WORKLOAD, ...extra });
const get = (path: string, more: Partial<MeshRequest> = {}): MeshRequest => ({ method: 'GET', path, headers: { host: 'serviceb' }, ...more });

describe('source identities, ports and IPs (mTLS-derived attributes)', () => {
  const policy = ap('peers', {
    rules: [
      { from: [{ source: { principals: ['cluster.local/ns/jwt-suite/sa/servicea'] } }], to: [{ operation: { ports: ['3001'] } }] },
      { from: [{ source: { namespaces: ['team-*'] } }], to: [{ operation: { paths: ['/ns'] } }] },
      { from: [{ source: { serviceAccounts: ['servicec'] } }], to: [{ operation: { paths: ['/sa'] } }] },
      { from: [{ source: { ipBlocks: ['10.1.0.0/16'] } }], to: [{ operation: { paths: ['/ip'] } }] },
    ],
  });

  it('principals match the peer identity and ports the destination port', async () => {
    expect((await run([policy], get('/x', { port: 3001, sourcePrincipal: 'cluster.local/ns/jwt-suite/sa/servicea' }))).status).toBe(200);
    expect((await run([policy], get('/x', { port: 8443, sourcePrincipal: 'cluster.local/ns/jwt-suite/sa/servicea' }))).status).toBe(403);
  });

  it('without a peer identity, principals never match', async () => {
    const v = await run([policy], get('/x', { port: 3001 }));
    expect(v.status).toBe(403);
    expect(v.steps.join('\n')).toContain('(none: no mTLS peer identity)');
  });

  it('namespaces are read from the peer identity, with * as a wildcard', async () => {
    expect((await run([policy], get('/ns', { sourcePrincipal: 'cluster.local/ns/team-blue/sa/x' }))).status).toBe(200);
    expect((await run([policy], get('/ns', { sourcePrincipal: 'cluster.local/ns/other/sa/x' }))).status).toBe(403);
  });

  it('a serviceAccount without namespace means the policy\'s namespace', async () => {
    expect((await run([policy], get('/sa', { sourcePrincipal: 'cluster.local/ns/jwt-suite/sa/servicec' }))).status).toBe(200);
    expect((await run([policy], get('/sa', { sourcePrincipal: 'cluster.local/ns/other/sa/servicec' }))).status).toBe(403);
  });

  it('ipBlocks take CIDR ranges', async () => {
    expect((await run([policy], get('/ip', { sourceIp: '10.1.200.3' }))).status).toBe(200);
    expect((await run([policy], get('/ip', { sourceIp: '10.2.0.1' }))).status).toBe(403);
  });
});

describe('CUSTOM, then DENY, then ALLOW', () => {
  const objects = [
    ap('ext', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{ to: [{ operation: { paths: ['/both'] } }] }] }),
    ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/both'] } }] }] }),
  ];

  it('a refusing external authorizer decides before DENY, with an empty 403', async () => {
    const v = await run(objects, get('/both'), { customAuthz: 'deny' });
    expect(v).toMatchObject({ status: 403, body: '', decidedBy: 'CUSTOM ns[jwt-suite]-policy[ext]-rule[0] (provider opa)' });
  });

  it('an allowing external authorizer leaves the decision to DENY', async () => {
    const v = await run(objects, get('/both'), { customAuthz: 'allow' });
    expect(v).toMatchObject({ status: 403, body: 'RBAC: access denied', decidedBy: 'AuthorizationPolicy DENY ns[jwt-suite]-policy[deny]-rule[0]' });
  });

  it('the external authorizer is not asked when no CUSTOM rule matches', async () => {
    const v = await run(objects, get('/other'), { customAuthz: 'deny' });
    expect(v.status).toBe(200);
  });
});

describe('key types', () => {
  it('an HS256 token verifies against an oct key', async () => {
    const secret = (await generateSecret('HS256', { extractable: true })) as CryptoKey;
    const jwk = { ...(await exportJWK(secret)), kid: 'hs', alg: 'HS256' };
    const token = await new SignJWT({ iss: ISS, sub: 'h', exp: NOW_S + 60 }).setProtectedHeader({ alg: 'HS256', kid: 'hs' }).sign(secret);
    const v = await run([ra([{ issuer: ISS, jwks: JSON.stringify({ keys: [jwk] }) }])], get('/', { headers: { authorization: `Bearer ${token}` } }));
    expect(v).toMatchObject({ status: 200, principal: `${ISS}/h` });
  });

  it('an EdDSA token verifies against an OKP key', async () => {
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'ed' };
    const token = await new SignJWT({ iss: ISS, sub: 'e', exp: NOW_S + 60 }).setProtectedHeader({ alg: 'EdDSA', kid: 'ed' }).sign(privateKey);
    const v = await run([ra([{ issuer: ISS, jwks: JSON.stringify({ keys: [jwk] }) }])], get('/', { headers: { authorization: `Bearer ${token}` } }));
    expect(v).toMatchObject({ status: 200, principal: `${ISS}/e` });
  });

  it('an RSA key cannot check an ES256 token of the same kid: verification fails', async () => {
    const rsNoAlg = { ...ctx.rs.jwk, alg: undefined, kid: 'shared' };
    const token = await ctx.sign({ iss: ISS, sub: 'x' }, { key: ctx.es, header: { alg: 'ES256', kid: 'shared' } });
    const v = await run([ra([{ issuer: ISS, jwks: JSON.stringify({ keys: [rsNoAlg] }) }])], get('/', { headers: { authorization: `Bearer ${token}` } }));
    expect(v.body).toBe('Jwt verification fails');
  });
});

describe('claims that are not strings', () => {
  it('request.auth.claims[exp] never matches: numbers are not strings to Envoy\'s metadata matcher', async () => {
    const objects = [ra([{ issuer: ISS, jwks: ctx.jwks(ctx.rs) }]), ap('need-exp', { rules: [{ when: [{ key: 'request.auth.claims[exp]', values: ['*'] }] }] })];
    const v = await run(objects, get('/', { headers: { authorization: `Bearer ${await ctx.token('servicea')}` } }));
    expect(v.status).toBe(403);
    expect(v.steps.join('\n')).toContain(`when request.auth.claims[exp] must be one of [*] but is ${NOW_S + 3600}`);
  });
});

describe('jwt_verify_lib details', () => {
  it('padding in a segment is accepted, a stray character is not', () => {
    const [h, p, s] = ['eyJhbGciOiJSUzI1NiJ9', 'e30', 'c2ln'];
    expect(parseJwt(`${h}.${p}=.${s}`).ok).toBe(true);
    expect(parseJwt(`${h}.e3+0.${s}`)).toEqual({ ok: false, status: 'JwtPayloadParseErrorBadBase64' });
  });

  it('a fractional exp is truncated, as GetUInt64 casts', () => {
    const r = parseJwt(`eyJhbGciOiJSUzI1NiJ9.${Buffer.from(JSON.stringify({ exp: 10.9 })).toString('base64url')}.c2ln`);
    expect(r.ok && r.jwt.exp).toBe(10);
  });

  it('audience normalisation strips one scheme and one trailing slash only', () => {
    expect(sanitizeAudience('https://a.example/')).toBe('a.example');
    expect(sanitizeAudience('http://a.example//')).toBe('a.example/');
    expect(sanitizeAudience('ftp://a/')).toBe('ftp://a');
  });

  it('a JWKS whose keys field is not a list is invalid as a whole', () => {
    expect(loadJwks({ keys: {} }).invalid).toBe('[keys] in Jwks is not an array');
    expect(loadJwks('{').invalid).toBe('Jwks is an invalid JSON');
    expect(loadJwks({ keys: [{ kty: 'EC', alg: 'ES256', crv: 'P-384', x: 'a', y: 'b' }] }).invalid).toBe('[crv] field specified is not compatible with [alg] for an EC key');
  });

  it('two providers sharing Authorization: a token accepted by one passes the outer OR', async () => {
    const objects = [ra([{ issuer: ISS, jwks: ctx.jwks(ctx.rs) }, { issuer: 'https://b.example/', jwks: ctx.jwks(ctx.es) }])];
    const v = await run(objects, get('/', { headers: { authorization: `Bearer ${await ctx.token('servicea')}` } }));
    expect(v.status).toBe(200);
    expect(v.steps.join('\n')).toContain('origins-1 (issuer https://jwt-factory/');
  });
});

describe('policy loading', () => {
  const bad = (text: string) => {
    try {
      parsePolicyText(text, 'p.yaml');
    } catch (err) {
      expect(err).toBeInstanceOf(PolicyError);
      return (err as PolicyError).message;
    }
    throw new Error('expected a PolicyError');
  };

  it('other kinds are skipped', () => {
    expect(parsePolicyText('apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: d}\n', 'p.yaml')).toEqual([]);
  });

  it('a typo names the file, the object and the field', () => {
    expect(bad('apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec:\n  jwtRules:\n  - issuer: x\n    fromHeader: [{name: a}]\n')).toBe('p.yaml (RequestAuthentication r): spec.jwtRules[0]: unknown field "fromHeader"');
  });

  it('an unknown action is refused', () => {
    expect(bad('apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: BLOCK}\n')).toContain('spec.action');
  });

  it('CUSTOM without provider and a when without values are refused', () => {
    expect(bad('apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: CUSTOM}\n')).toBe('p.yaml (AuthorizationPolicy a): spec.provider: must be set for action CUSTOM');
    expect(bad('apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{when: [{key: source.ip}]}]}\n')).toBe('p.yaml (AuthorizationPolicy a): spec.rules[0].when[0]: at least one of values or notValues must be set');
  });

  it('a non-numeric port is refused', () => {
    expect(bad('apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{to: [{operation: {ports: [http]}}]}]}\n')).toContain('invalid port "http"');
  });

  it('selector and targetRefs together are refused', () => {
    expect(bad('apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {selector: {matchLabels: {app: x}}, targetRefs: [{kind: Service, name: x}]}\n')).toContain('only one of selector or targetRefs');
  });
});

describe('JWKS resolution at the edges', () => {
  it('uses OpenID discovery on the issuer when no jwksUri is given', async () => {
    const asked: string[] = [];
    const fetcher: Fetcher = async (url) => {
      asked.push(url);
      const body = url.endsWith('/.well-known/openid-configuration') ? { jwks_uri: 'https://issuer.example/keys' } : JSON.parse(ctx.jwks(ctx.rs));
      return { ok: true, status: 200, json: async () => body };
    };
    const policies = loadPolicyObjects([ra([{ issuer: 'https://issuer.example/' }])], 't');
    const resolved = await resolveJwks(policies, {}, { fetch: fetcher });
    expect(asked).toEqual(['https://issuer.example/.well-known/openid-configuration', 'https://issuer.example/keys']);
    expect(resolved.jwks['https://issuer.example/']).toEqual(JSON.parse(ctx.jwks(ctx.rs)));
  });

  it('a failed fetch is a note, not an error', async () => {
    const fetcher: Fetcher = async () => ({ ok: false, status: 404, json: async () => ({}) });
    const policies = loadPolicyObjects([ra([{ issuer: ISS, jwksUri: 'https://k.example/jwks' }])], 't');
    const resolved = await resolveJwks(policies, {}, { fetch: fetcher });
    expect(resolved.notes).toEqual([`could not fetch the JWKS for issuer ${ISS} from https://k.example/jwks (HTTP 404)`]);
    expect(resolved.jwks).toEqual({});
  });

  it('a supplied JWKS is not fetched again', async () => {
    let calls = 0;
    const fetcher: Fetcher = async () => {
      calls += 1;
      return { ok: true, status: 200, json: async () => ({}) };
    };
    const policies = loadPolicyObjects([ra([{ issuer: ISS, jwksUri: 'https://k.example/jwks' }])], 't');
    await resolveJwks(policies, { 'https://k.example/jwks': { keys: [] } }, { fetch: fetcher });
    expect(calls).toBe(0);
  });
});
