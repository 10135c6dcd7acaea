import { randomUUID } from 'node:crypto';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basic, claimsOf, expectOAuthError, loginForCode, makeOidcFactory, pkce, testConfigYaml, webuiQuery, ISSUER } from './harness.js';

type Factory = Awaited<ReturnType<typeof makeOidcFactory>>;
let f: Factory;
let clientKey: CryptoKey;
let publicPem: string;

beforeAll(async () => {
  const pair = await generateKeyPair('ES256', { extractable: true });
  clientKey = pair.privateKey;
  publicPem = await exportSPKI(pair.publicKey);
  const jwk = { ...(await exportJWK(pair.publicKey)), alg: 'ES256', kid: 'k1' };
  const extra = `  - client_id: signer
    token_endpoint_auth_method: private_key_jwt
    grant_types: [client_credentials]
    audiences: [serviceb]
    jwks: { keys: [${JSON.stringify(jwk)}] }
  - client_id: remote
    token_endpoint_auth_method: private_key_jwt
    grant_types: [client_credentials]
    jwks_uri: http://127.0.0.1:1/jwks.json
`;
  f = await makeOidcFactory({ yaml: testConfigYaml(extra) });
});
afterAll(async () => {
  await f.cleanup();
});

const form = (path: string, body: Record<string, string>, auth?: string) => {
  const r = request(f.app).post(path).type('form');
  if (auth) r.set('Authorization', auth);
  return r.send(body);
};
const SERVICEA = basic('servicea', 'servicea-secret');

/** alice's tokens from the code flow (webui, scope openid profile email offline_access). */
async function aliceTokens(scope = 'openid profile email offline_access') {
  const { verifier, challenge } = pkce();
  const { code } = await loginForCode(f.app, webuiQuery(challenge, { scope }));
  const res = await form('/token', { grant_type: 'authorization_code', code: code!, redirect_uri: 'http://localhost:3000/callback', code_verifier: verifier }, basic('webui', 'webui-secret'));
  return res.body as { access_token: string; id_token: string; refresh_token: string };
}

describe('GET /userinfo', () => {
  it("answers alice's claims by scope for her access token", async () => {
    const { access_token } = await aliceTokens('openid email');
    const res = await request(f.app).get('/userinfo').set('Authorization', `Bearer ${access_token}`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toEqual({ sub: 'alice', email: 'alice@example.com', email_verified: true });
  });

  it('answers 401 invalid_token with a Bearer challenge without a token, with a bad one or with an id token', async () => {
    const { id_token } = await aliceTokens();
    const none = await request(f.app).get('/userinfo');
    expectOAuthError(none, 401, 'invalid_token');
    expect(none.headers['www-authenticate']).toMatch(/^Bearer realm="jwt-factory"/);
    expectOAuthError(await request(f.app).get('/userinfo').set('Authorization', 'Bearer abc.def.ghi'), 401, 'invalid_token');
    const id = await request(f.app).get('/userinfo').set('Authorization', `Bearer ${id_token}`);
    expectOAuthError(id, 401, 'invalid_token');
    expect(id.headers['www-authenticate']).toMatch(/error="invalid_token"/);
  });

  it('answers 403 insufficient_scope for a service token', async () => {
    const { access_token } = (await form('/token', { grant_type: 'client_credentials' }, SERVICEA)).body;
    expectOAuthError(await request(f.app).get('/userinfo').set('Authorization', `Bearer ${access_token}`), 403, 'insufficient_scope');
  });

  it('answers 401 once the access token expired (at exp, no skew)', async () => {
    const { access_token } = await aliceTokens();
    f.time.advance(599_000);
    expect((await request(f.app).post('/userinfo').type('form').send({ access_token })).status).toBe(200);
    f.time.advance(1000);
    expectOAuthError(await request(f.app).get('/userinfo').set('Authorization', `Bearer ${access_token}`), 401, 'invalid_token');
  });
});

describe('POST /introspect (RFC 7662) and POST /revoke (RFC 7009)', () => {
  it('answers active: true with what an access token is, and active: false for garbage', async () => {
    const { access_token, refresh_token } = await aliceTokens();
    const res = await form('/introspect', { token: access_token }, SERVICEA);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ active: true, token_type: 'Bearer', sub: 'alice', client_id: 'webui', aud: 'serviceb', iss: ISSUER, username: 'alice' });
    expect((await form('/introspect', { token: refresh_token, token_type_hint: 'refresh_token' }, SERVICEA)).body).toMatchObject({ active: true, token_type: 'refresh_token', client_id: 'webui' });
    expect((await form('/introspect', { token: 'garbage' }, SERVICEA)).body).toEqual({ active: false });
  });

  it('answers active: false for an access token at its exp', async () => {
    const { access_token } = await aliceTokens();
    f.time.advance(600_000);
    expect((await form('/introspect', { token: access_token }, SERVICEA)).body).toEqual({ active: false });
  });

  it('refuses introspection without client authentication (401 invalid_client) and by a public client', async () => {
    const { access_token } = await aliceTokens();
    expectOAuthError(await form('/introspect', { token: access_token }), 401, 'invalid_client');
    expectOAuthError(await form('/introspect', { token: access_token, client_id: 'spa' }), 401, 'invalid_client');
  });

  it('revokes a refresh token with its family, and an access token for introspection and userinfo', async () => {
    const { access_token, refresh_token } = await aliceTokens();
    const webui = basic('webui', 'webui-secret');
    const revoked = await form('/revoke', { token: refresh_token }, webui);
    expect(revoked.status).toBe(200);
    expectOAuthError(await form('/token', { grant_type: 'refresh_token', refresh_token }, webui), 400, 'invalid_grant');
    expect((await form('/revoke', { token: access_token, token_type_hint: 'access_token' }, webui)).status).toBe(200);
    expect((await form('/introspect', { token: access_token }, SERVICEA)).body).toEqual({ active: false });
    expectOAuthError(await request(f.app).get('/userinfo').set('Authorization', `Bearer ${access_token}`), 401, 'invalid_token');
  });

  it("answers 200 but revokes nothing for another client's token, and unsupported_token_type for an unknown hint", async () => {
    const { refresh_token } = await aliceTokens();
    expect((await form('/revoke', { token: refresh_token }, basic('cli', 'cli-secret'))).status).toBe(200);
    expect((await form('/introspect', { token: refresh_token }, SERVICEA)).body.active).toBe(true);
    expectOAuthError(await form('/revoke', { token: refresh_token, token_type_hint: 'saml' }, basic('webui', 'webui-secret')), 400, 'unsupported_token_type');
  });
});

describe('GET /logout (RP-initiated logout)', () => {
  it('ends the session and returns to the exact post_logout_redirect_uri with state; the next authorization asks for a login', async () => {
    const { verifier, challenge } = pkce();
    const login = await loginForCode(f.app, webuiQuery(challenge));
    const { id_token } = (await form('/token', { grant_type: 'authorization_code', code: login.code!, redirect_uri: 'http://localhost:3000/callback', code_verifier: verifier }, basic('webui', 'webui-secret'))).body;
    const out = await request(f.app).get('/logout').set('Cookie', login.jar).query({ id_token_hint: id_token, post_logout_redirect_uri: 'http://localhost:3000/', state: 'bye' });
    expect(out.status).toBe(303);
    expect(out.headers.location).toBe('http://localhost:3000/?state=bye');
    expect(([out.headers['set-cookie']].flat() as string[]).some((c) => /^jwtf_session=;/.test(c))).toBe(true);
    const again = await request(f.app).get('/authorize').set('Cookie', login.jar).query(webuiQuery(pkce().challenge));
    expect(again.status).toBe(200);
    expect(again.text).toContain('name="password"');
  });

  it('shows an error page for a post_logout_redirect_uri that is not registered exactly, or without a client', async () => {
    const { id_token } = await aliceTokens();
    for (const query of [{ id_token_hint: id_token, post_logout_redirect_uri: 'http://localhost:3000' }, { post_logout_redirect_uri: 'http://localhost:3000/' }]) {
      const res = await request(f.app).get('/logout').query(query);
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.headers.location).toBeUndefined();
    }
  });

  it('shows the logged-out page without a post_logout_redirect_uri', async () => {
    const res = await request(f.app).get('/logout');
    expect(res.status).toBe(200);
    expect(res.text).toContain('You are logged out');
  });
});

describe('token exchange (RFC 8693)', () => {
  const exchange = (subject: string, extra: Record<string, string> = {}) =>
    form('/token', { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: subject, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', audience: 'servicec', ...extra }, SERVICEA);

  it("turns alice's token into one for servicec whose act names servicea", async () => {
    const { access_token } = await aliceTokens('openid profile');
    const res = await exchange(access_token);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ token_type: 'Bearer', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', scope: 'openid profile' });
    expect(claimsOf(res.body.access_token)).toMatchObject({ iss: ISSUER, sub: 'alice', aud: 'servicec', client_id: 'servicea', act: { sub: 'servicea' } });
  });

  it('refuses an invalid or foreign subject token with invalid_request, a wider scope with invalid_scope, another audience with invalid_target', async () => {
    const { access_token, id_token } = await aliceTokens('openid');
    const foreign = await new SignJWT({ sub: 'alice', scope: 'openid' }).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt' }).setIssuer('https://elsewhere/').setIssuedAt().setExpirationTime('5m').sign(clientKey);
    expectOAuthError(await exchange(foreign), 400, 'invalid_request');
    expectOAuthError(await exchange(id_token), 400, 'invalid_request');
    expectOAuthError(await exchange(access_token, { scope: 'openid email' }), 400, 'invalid_scope');
    expectOAuthError(await exchange(access_token, { audience: 'servicez' }), 400, 'invalid_target');
    expectOAuthError(await exchange(access_token, { subject_token_type: 'urn:ietf:params:oauth:token-type:saml2' }), 400, 'invalid_request');
  });

  it('refuses token exchange for a client that did not register it (unauthorized_client)', async () => {
    const { access_token } = await aliceTokens('openid');
    const res = await form('/token', { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: access_token, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token' }, basic('cli', 'cli-secret'));
    expectOAuthError(res, 400, 'unauthorized_client');
  });
});

describe('private_key_jwt (RFC 7523)', () => {
  const assertion = (aud = `${ISSUER}/token`) =>
    new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer('signer')
      .setSubject('signer')
      .setAudience(aud)
      .setIssuedAt(f.time.clock())
      .setExpirationTime(Math.floor(f.time.clock().getTime() / 1000) + 60)
      .sign(clientKey);
  const withAssertion = (jwt: string) =>
    form('/token', { grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: jwt });

  it('authenticates a client by its signed assertion (aud = token endpoint or issuer)', async () => {
    const res = await withAssertion(await assertion());
    expect(res.status).toBe(200);
    expect(claimsOf(res.body.access_token)).toMatchObject({ sub: 'signer', client_id: 'signer' });
    expect((await withAssertion(await assertion(ISSUER))).status).toBe(200);
  });

  it('refuses a replayed jti with 401 invalid_client', async () => {
    const jwt = await assertion();
    expect((await withAssertion(jwt)).status).toBe(200);
    expectOAuthError(await withAssertion(jwt), 401, 'invalid_client');
  });

  it('refuses alg none, HS256 keyed with the public key, another aud and an expired assertion with 401 invalid_client', async () => {
    const header = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');
    const body = Buffer.from(JSON.stringify({ iss: 'signer', sub: 'signer', aud: `${ISSUER}/token`, jti: randomUUID(), exp: Math.floor(f.time.clock().getTime() / 1000) + 60 })).toString('base64url');
    expectOAuthError(await withAssertion(`${header}.${body}.`), 401, 'invalid_client');
    const hs = await new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
      .setIssuer('signer')
      .setSubject('signer')
      .setAudience(`${ISSUER}/token`)
      .setExpirationTime(Math.floor(f.time.clock().getTime() / 1000) + 60)
      .sign(new TextEncoder().encode(publicPem));
    expectOAuthError(await withAssertion(hs), 401, 'invalid_client');
    expectOAuthError(await withAssertion(await assertion('https://other/token')), 401, 'invalid_client');
    const old = await assertion();
    f.time.advance(121_000);
    expectOAuthError(await withAssertion(old), 401, 'invalid_client');
  });

  it("answers 401 invalid_client, not a 500, when the client's jwks_uri cannot be read", async () => {
    const jwt = await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'ES256' }).setIssuer('remote').setSubject('remote').setAudience(ISSUER).setExpirationTime(Math.floor(f.time.clock().getTime() / 1000) + 60).sign(clientKey);
    expectOAuthError(await withAssertion(jwt), 401, 'invalid_client');
  });

  it('refuses a client secret for a private_key_jwt client', async () => {
    expectOAuthError(await form('/token', { grant_type: 'client_credentials' }, basic('signer', 'x')), 401, 'invalid_client');
  });
});
