import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeFactory } from '../factory/harness.js';
import { CASES, ISS, JWKS_SETS, NOW, POLICY_SETS, WORKLOAD, createCtx, type Ctx } from './cases.js';
import { assertOutcome, fromVerdict } from './outcome.js';

/** The factory's own app (jwt-factory/http.ts createApp) over a temp KEYS_DIR: /mesh is mounted there. */
const factories: Array<{ cleanup: () => Promise<void> }> = [];
async function factoryApp(env: Record<string, string> = {}): Promise<Express> {
  const f = await makeFactory(env);
  factories.push(f);
  return f.app;
}

let ctx: Ctx;
let app: Express;
beforeAll(async () => {
  ctx = await createCtx();
  app = await factoryApp({ MESH_FETCH_JWKS: 'true' });
});
afterAll(async () => {
  await Promise.all(factories.map((f) => f.cleanup()));
});

describe('the mesh table through POST /mesh/evaluate', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const res = await request(app)
        .post('/mesh/evaluate')
        .send({ policies: POLICY_SETS[c.set]!(ctx), request: await c.request(ctx), jwks: JWKS_SETS[c.set]?.(ctx), now: NOW.toISOString(), workload: WORKLOAD });
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      assertOutcome(fromVerdict(res.body), c.expect);
    });
  }
});

describe('POST /mesh/evaluate input handling', () => {
  const minimal = { request: { method: 'GET', path: '/' }, now: NOW.toISOString() };

  it('the same policies sent again reuse their translation, and any change of JWKS, workload or release is translated anew', async () => {
    const policies = [{ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'ra', namespace: 'jwt-suite' }, spec: { jwtRules: [{ issuer: ISS, jwksUri: 'https://keys.example/jwks' }] } }];
    const send = async (jwks: Record<string, unknown> | undefined, sub: string, extra: Record<string, unknown> = {}) =>
      (await request(app).post('/mesh/evaluate').send({ policies, jwks, request: { method: 'GET', path: '/', headers: { authorization: `Bearer ${await ctx.token(sub)}` } }, now: NOW.toISOString(), workload: WORKLOAD, ...extra })).body;
    const trusted = { 'https://keys.example/jwks': ctx.jwks(ctx.rs) };
    expect(await send(trusted, 'servicea')).toMatchObject({ status: 200, principal: `${ISS}/servicea` });
    expect(await send(trusted, 'servicec')).toMatchObject({ status: 200, principal: `${ISS}/servicec` });
    expect(await send({ 'https://keys.example/jwks': ctx.jwks(ctx.es) }, 'servicea')).toMatchObject({ status: 401, body: "Jwks doesn't have key to match kid or alg from Jwt" });
    expect(await send(undefined, 'servicea')).toMatchObject({ status: 401, body: 'Jwt verification fails' });
    expect(await send(trusted, 'servicea', { istioVersion: '1.28' })).toMatchObject({ status: 200, istio: '1.28' });
    expect(await send(trusted, 'servicea', { workload: { namespace: 'elsewhere', labels: {} } })).toMatchObject({ status: 200, principal: null });
  });

  it('accepts the policies as YAML text', async () => {
    const yaml = `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing, namespace: jwt-suite}\nspec: {}\n---\napiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {mtls: {mode: STRICT}}\n`;
    const res = await request(app).post('/mesh/evaluate').send({ ...minimal, yaml, workload: WORKLOAD });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 403, body: 'RBAC: access denied' });
  });

  it('a body over the factory\'s BODY_LIMIT answers 413 JSON and the factory keeps serving', async () => {
    const res = await request(app).post('/mesh/evaluate').send({ ...minimal, yaml: '#'.repeat(200_000) });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('body_too_large');
    const after = await request(app).post('/mesh/evaluate').send({ ...minimal, yaml: 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: n}\nspec: {}\n' });
    expect(after.body).toMatchObject({ status: 403, body: 'RBAC: access denied' });
  });

  it('says so when nothing sent is a policy: a Service alone lets the request through', async () => {
    const res = await request(app).post('/mesh/evaluate').send({ ...minimal, yaml: 'apiVersion: v1\nkind: Service\nmetadata: {name: s}\n' });
    expect(res.body.status).toBe(200);
    expect(res.body.steps[0]).toMatch(/^no RequestAuthentication or AuthorizationPolicy was given/);
  });

  it('a policy with an unknown field answers 400 invalid_policy naming the field', async () => {
    const policies = [{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p' }, spec: { rules: [{ from: [{ source: { requestPrincipal: ['*'] } }] }] } }];
    const res = await request(app).post('/mesh/evaluate').send({ ...minimal, policies });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.error.code).toBe('invalid_policy');
    expect(res.body.error.field).toBe('spec.rules[0].from[0].source');
    expect(res.body.error.message).toContain('unknown field "requestPrincipal"');
  });

  it('an unknown when key answers 400 invalid_policy', async () => {
    const policies = [{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p' }, spec: { rules: [{ when: [{ key: 'request.auth.claim[groups]', values: ['a'] }] }] } }];
    const res = await request(app).post('/mesh/evaluate').send({ ...minimal, policies });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_policy');
    expect(res.body.error.message).toContain('unknown attribute "request.auth.claim[groups]"');
  });

  it('YAML that does not parse answers 400 invalid_policy with the line', async () => {
    const res = await request(app).post('/mesh/evaluate').send({ ...minimal, yaml: 'kind: [unclosed\n' });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_policy');
    expect(res.body.error.message).toMatch(/^yaml(:\d+)?: not valid YAML/);
  });

  it('both or neither of policies and yaml answer 400 invalid_request', async () => {
    for (const body of [minimal, { ...minimal, policies: [], yaml: '' }]) {
      const res = await request(app).post('/mesh/evaluate').send(body);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
  });

  it('istioVersion picks the release modelled; one outside the modelled range answers 400 invalid_request naming it', async () => {
    const ok = await request(app).post('/mesh/evaluate').send({ ...minimal, policies: [], istioVersion: '1.26' });
    expect(ok.status).toBe(200);
    expect(ok.body.istio).toBe('1.26');
    const bad = await request(app).post('/mesh/evaluate').send({ ...minimal, policies: [], istioVersion: '1.2' });
    expect(bad.status).toBe(400);
    expect(bad.headers['content-type']).toMatch(/^application\/json/);
    expect(bad.body.error).toMatchObject({ code: 'invalid_request', field: 'istioVersion' });
  });

  it('a path without a leading slash answers 400 naming request.path', async () => {
    const res = await request(app).post('/mesh/evaluate').send({ policies: [], request: { method: 'GET', path: 'api' } });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_request', field: 'request.path' });
  });

  it('an unreadable now answers 400', async () => {
    const res = await request(app).post('/mesh/evaluate').send({ ...minimal, policies: [], now: 'yesterday' });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_request', field: 'now' });
  });

  it('malformed JSON answers 400 malformed_json', async () => {
    const res = await request(app).post('/mesh/evaluate').set('content-type', 'application/json').send('{"policies":');
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('malformed_json');
  });
});

describe('POST /mesh/evaluate remote JWKS', () => {
  let jwksServer: http.Server;
  let jwksUrl: string;
  let slowUrl: string;
  let hits = 0;

  beforeAll(async () => {
    jwksServer = http.createServer((req, res) => {
      hits += 1;
      if (req.url === '/slow') return; // never answers: the fetch must time out
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(ctx.jwks(ctx.rs));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    const { port } = jwksServer.address() as AddressInfo;
    jwksUrl = `http://127.0.0.1:${port}/jwks.json`;
    slowUrl = `http://127.0.0.1:${port}/slow`;
  });
  afterAll(async () => {
    jwksServer.closeAllConnections();
    await new Promise((resolve) => jwksServer.close(resolve));
  });

  const body = async (jwksUri: string, fetchJwks?: boolean) => ({
    policies: [{ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'remote' }, spec: { jwtRules: [{ issuer: ISS, jwksUri }] } }],
    request: { method: 'GET', path: '/api', headers: { authorization: `Bearer ${await ctx.token('servicea')}` } },
    now: NOW.toISOString(),
    ...(fetchJwks === undefined ? {} : { fetchJwks }),
  });

  it('does not fetch a jwksUri unless the caller opts in', async () => {
    const before = hits;
    const res = await request(app).post('/mesh/evaluate').send(await body(jwksUrl));
    expect(hits).toBe(before);
    // istiod's fallback JWKS has no kid: the token's key is tried and fails (jwks_resolver.go PublicOnlyJwks).
    expect(res.body).toMatchObject({ status: 401, body: 'Jwt verification fails' });
  });

  it('fetches the jwksUri with fetchJwks: true and accepts the token', async () => {
    const res = await request(app).post('/mesh/evaluate').send(await body(jwksUrl, true));
    expect(res.body).toMatchObject({ status: 200, principal: `${ISS}/servicea` });
    expect(res.body.steps[0]).toContain(`fetched the JWKS for issuer ${ISS} from ${jwksUrl}`);
  });

  it('a JWKS supplied by issuer (or under "*") is used as given: with fetchJwks the jwksUri is not fetched over it', async () => {
    for (const key of [ISS, '*']) {
      const before = hits;
      const res = await request(app).post('/mesh/evaluate').send({ ...(await body(jwksUrl, true)), jwks: { [key]: JSON.parse(ctx.jwks(ctx.rs)) } });
      expect(res.body).toMatchObject({ status: 200, principal: `${ISS}/servicea` });
      expect(hits).toBe(before);
    }
  });

  it('a JWKS server that does not answer in time is reported and treated as unfetchable', async () => {
    const quick = await factoryApp({ MESH_FETCH_JWKS: 'true', MESH_FETCH_TIMEOUT_MS: '200' });
    const res = await request(quick).post('/mesh/evaluate').send(await body(slowUrl, true));
    expect(res.body.status).toBe(401);
    expect(res.body.body).toBe('Jwt verification fails');
    expect(res.body.steps[0]).toContain('no answer within 200 ms');
  });

  it('a factory with the default MESH_FETCH_JWKS=false refuses fetchJwks: true (403) and fetches nothing', async () => {
    const locked = await factoryApp();
    const before = hits;
    const res = await request(locked).post('/mesh/evaluate').send(await body(jwksUrl, true));
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: 'jwks_fetch_disabled', field: 'fetchJwks' });
    expect(res.body.error.message).toContain('MESH_FETCH_JWKS');
    expect(hits).toBe(before);
  });

  it('GET on the router is not a route (404 JSON)', async () => {
    const res = await request(app).get('/mesh/evaluate');
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('route_not_found');
  });
});

it('the verdict JSON of the router equals the engine verdict shape', async () => {
  const c = CASES[1]!;
  const res = await request(app).post('/mesh/evaluate').send({ policies: POLICY_SETS[c.set]!(ctx), request: await c.request(ctx), now: NOW.toISOString(), workload: WORKLOAD });
  expect(Object.keys(res.body).sort()).toEqual(['body', 'claims', 'decidedBy', 'istio', 'principal', 'responseHeaders', 'status', 'steps', 'upstreamHeaders', 'upstreamPath']);
  expect(res.body.claims).toMatchObject({ sub: 'servicea', iss: ISS });
});
