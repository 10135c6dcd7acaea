import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../app/app.js';
import { loadServiceConfig } from '../../app/config.js';
import { createPeerKeys } from '../../app/peerkeys.js';
import { createSelfKeyStore } from '../../app/selfkeys.js';
import { createHttpClient, type HttpClient } from '../../lib/httpclient.js';
import { silentLogger } from '../../lib/logger.js';
import { basic, loginForCode, makeOidcFactory, pkce, testConfigYaml, webuiQuery, ISSUER } from '../factory/oidc/harness.js';

/**
 * Scenarios 5 and 7: a user's access token from the factory's OIDC provider, passed by servicea to
 * serviceb, which checks it against the factory's JWKS (fetched over a real port), its
 * audience and its scope.
 */

let factory: Awaited<ReturnType<typeof makeOidcFactory>>;
const servers: Server[] = [];
let client: HttpClient;
let servicea: Express;
let serviceb: Express;
let unconfigured: Express;

const listen = async (app: Express) => {
  const server = createServer(app);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

beforeAll(async () => {
  // Plus a one-second client like the demo's webui-short, for the expired variant of scenario 7.
  factory = await makeOidcFactory({
    yaml: testConfigYaml(`  - client_id: short
    client_secret: short-secret
    redirect_uris: [http://localhost:3000/callback]
    scope: openid profile
    audiences: [serviceb]
    access_token_lifetime: 1
`),
  });
  // A legacy key in the same JWKS before serviceb first reads it (its reloads are rate-limited on the test's clock).
  await request(factory.app).post('/keys/servicea?alg=ES256');
  const factoryUrl = await listen(factory.app);
  client = createHttpClient({ timeoutMs: 2000 });
  const now = () => factory.time.clock();
  const env = { ISSUER, FACTORY_URL: factoryUrl };
  const peerKeys = createPeerKeys({ source: 'dir', dir: factory.dir, jwksBaseUrl: '', client, now });
  serviceb = createApp({ config: loadServiceConfig('serviceb', env), logger: silentLogger(), client, peerKeys, now });
  const servicebUrl = await listen(serviceb);
  const servicecUrl = await listen(createApp({ config: loadServiceConfig('servicec', env), logger: silentLogger(), client, peerKeys, now }));
  const aEnv = { ...env, SERVICEB_URL: servicebUrl, SERVICEC_URL: servicecUrl };
  const selfKeys = createSelfKeyStore(factory.dir);
  servicea = createApp({ config: loadServiceConfig('servicea', { ...aEnv, OIDC_CLIENT_SECRET: 'servicea-secret' }), logger: silentLogger(), client, peerKeys, selfKeys, now });
  unconfigured = createApp({ config: loadServiceConfig('servicea', aEnv), logger: silentLogger(), client, peerKeys, selfKeys, now });
});

afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  client.close();
  await factory.cleanup();
});

/** alice logs in to webui with `scope` and gets her access token (aud serviceb). */
async function aliceToken(scope: string): Promise<{ access_token: string; id_token: string }> {
  const { verifier, challenge } = pkce();
  const { code } = await loginForCode(factory.app, webuiQuery(challenge, { scope }));
  const res = await request(factory.app).post('/token').type('form').set('Authorization', basic('webui', 'webui-secret')).send({ grant_type: 'authorization_code', code, redirect_uri: 'http://localhost:3000/callback', code_verifier: verifier });
  return res.body;
}

describe('scenario 5: a logged-in user calls through servicea to serviceb', () => {
  it("answers serviceb's verdict with alice's claims", async () => {
    const { access_token } = await aliceToken('openid profile');
    const res = await request(servicea).get('/scenario5').set('Authorization', `Bearer ${access_token}`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.serviceb).toMatchObject({ status: 200, valid: true, claims: { iss: ISSUER, sub: 'alice', aud: 'serviceb', client_id: 'webui', scope: 'openid profile', groups: ['admins'] } });
  });

  it('answers 401 token_missing at servicea without a user token', async () => {
    const res = await request(servicea).get('/scenario5');
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('token_missing');
    expect(res.headers['www-authenticate']).toBe('Bearer realm="servicea"');
  });

  it('serviceb refuses a token without the profile scope, a legacy factory token, an id token and a token for another audience, each with 403', async () => {
    const narrow = await aliceToken('openid');
    const { access_token: wide, id_token } = await aliceToken('openid profile');
    // The open legacy endpoint signs with a key of the same JWKS; typ at+jwt is what sets the provider's tokens apart.
    const legacy = (await request(factory.app).post('/issueToken/servicea').send({ sub: 'alice', aud: 'serviceb', scope: 'openid profile' })).text;
    const forC = (await request(factory.app).post('/token').type('form').set('Authorization', basic('servicea', 'servicea-secret')).send({ grant_type: 'client_credentials', resource: 'servicec' })).body.access_token as string;
    const cases: Array<[string, string]> = [
      [narrow.access_token, 'insufficient_scope'],
      [legacy, 'typ_invalid'],
      [id_token, 'audience_invalid'],
      [forC, 'audience_invalid'],
    ];
    for (const [token, code] of cases) {
      const res = await request(serviceb).get('/scenario5-server').set('Authorization', `Bearer ${token}`);
      expect(res.status).toBe(403);
      expect(res.body).toMatchObject({ valid: false, error: { name: 'JsonWebTokenError', code } });
    }
    expect((await request(serviceb).get('/scenario5-server').set('Authorization', `Bearer ${wide}`)).status).toBe(200);
  });

  it('serviceb refuses an expired user token with TokenExpiredError, past the 60 s skew', async () => {
    const { access_token } = await aliceToken('openid profile');
    factory.time.advance((600 + 60) * 1000);
    const res = await request(serviceb).get('/scenario5-server').set('Authorization', `Bearer ${access_token}`);
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ name: 'TokenExpiredError', code: 'expired' });
  });
});

describe('the expired variants of the user scenarios', () => {
  it('answers ?expired=1 on /scenario5, /scenario6 and /scenario7 with 400 expired_not_applicable: servicea cannot make her token expired', async () => {
    const { access_token } = await aliceToken('openid profile');
    for (const n of [5, 6, 7]) {
      const res = await request(servicea).get(`/scenario${n}?expired=1`).set('Authorization', `Bearer ${access_token}`);
      expect(res.status, `scenario ${n}`).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.body.error.code).toBe('expired_not_applicable');
    }
  });

  it('refuses to exchange a token of a one-second client one second after its exp, with the reason', async () => {
    // The demo's webui-short: the same login, access tokens that live one second.
    const yaml = (await import('node:fs')).readFileSync(new URL('../../jwt-factory/oidc.demo.yaml', import.meta.url), 'utf8');
    expect(yaml).toMatch(/client_id: webui-short[\s\S]*?access_token_lifetime: 1\n/);
    const { verifier, challenge } = pkce();
    const { code } = await loginForCode(factory.app, webuiQuery(challenge, { client_id: 'short', scope: 'openid profile' }));
    const tokens = await request(factory.app).post('/token').type('form').set('Authorization', basic('short', 'short-secret')).send({ grant_type: 'authorization_code', code, redirect_uri: 'http://localhost:3000/callback', code_verifier: verifier });
    expect(tokens.body.expires_in).toBe(1);
    const valid = await request(servicea).get('/scenario7').set('Authorization', `Bearer ${tokens.body.access_token}`);
    expect(valid.body.servicec).toMatchObject({ valid: true });
    factory.time.advance(2000);
    const res = await request(servicea).get('/scenario7').set('Authorization', `Bearer ${tokens.body.access_token}`);
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: 'token_exchange_refused', oauthError: 'invalid_request', description: 'subject_token: The access token is not valid: jwt expired' });
  });
});

describe('scenario 7: servicea exchanges the user token for one for servicec (RFC 8693)', () => {
  it('servicec sees sub = alice and act.sub = servicea', async () => {
    const { access_token } = await aliceToken('openid profile');
    const res = await request(servicea).get('/scenario7').set('Authorization', `Bearer ${access_token}`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.servicec).toMatchObject({ status: 200, valid: true, claims: { iss: ISSUER, sub: 'alice', aud: 'servicec', client_id: 'servicea', act: { sub: 'servicea' }, scope: 'openid profile' } });
  });

  it('answers 403 token_exchange_refused when the provider refuses the user token (here: expired)', async () => {
    const { access_token } = await aliceToken('openid profile');
    factory.time.advance(600_000);
    const res = await request(servicea).get('/scenario7').set('Authorization', `Bearer ${access_token}`);
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: 'token_exchange_refused', oauthError: 'invalid_request' });
  });

  it('answers 409 oidc_client_missing when servicea has no OIDC_CLIENT_SECRET', async () => {
    const { access_token } = await aliceToken('openid profile');
    const res = await request(unconfigured).get('/scenario7').set('Authorization', `Bearer ${access_token}`);
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('oidc_client_missing');
  });
});

describe('scenario 6: the password grant id token, through servicea to serviceb', () => {
  /** The WSO2 seed's call: grant_type=password with Basic client authentication. */
  const passwordGrant = async () =>
    (await request(factory.app).post('/token').type('form').set('Authorization', basic('cli', 'cli-secret')).send({ grant_type: 'password', username: 'alice', password: 'alice-password', scope: 'openid' })).body as { id_token: string; access_token: string };

  it("answers serviceb's verdict on the id token: alice, aud cli", async () => {
    const { id_token } = await passwordGrant();
    const res = await request(servicea).get('/scenario6').set('Authorization', `Bearer ${id_token}`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.serviceb).toMatchObject({ status: 200, valid: true, claims: { iss: ISSUER, sub: 'alice', aud: 'cli' } });
  });

  it('answers 401 token_missing without a token; serviceb refuses the access token of the same grant (403 typ_invalid)', async () => {
    const missing = await request(servicea).get('/scenario6');
    expect(missing.status).toBe(401);
    expect(missing.body.error.code).toBe('token_missing');
    const { access_token } = await passwordGrant();
    const res = await request(serviceb).get('/scenario6-server').set('Authorization', `Bearer ${access_token}`);
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ valid: false, error: { code: expect.stringMatching(/^(typ_invalid|audience_invalid)$/) } });
  });
});
