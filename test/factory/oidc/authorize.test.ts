import { readFileSync } from 'node:fs';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { basic, expectOAuthError, claimsOf, cookieJar, hiddenField, loginForCode, makeOidcFactory, pkce, testConfigYaml, webuiQuery, ISSUER } from './harness.js';

type Factory = Awaited<ReturnType<typeof makeOidcFactory>>;
let f: Factory;
beforeEach(async () => {
  f = await makeOidcFactory();
});
afterEach(async () => {
  await f.cleanup();
});

const redeem = (code: string, verifier: string, extra: Record<string, string> = {}, auth = basic('webui', 'webui-secret')) =>
  request(f.app).post('/token').type('form').set('Authorization', auth).send({ grant_type: 'authorization_code', code, redirect_uri: 'http://localhost:3000/callback', code_verifier: verifier, ...extra });

const refresh = (refreshToken: string, auth = basic('webui', 'webui-secret')) =>
  request(f.app).post('/token').type('form').set('Authorization', auth).send({ grant_type: 'refresh_token', refresh_token: refreshToken });


/** An error redirect back to the client: 303 to the registered redirect_uri with error, state and iss. */
function expectErrorRedirect(res: request.Response, error: string) {
  expect(res.status).toBe(303);
  const url = new URL(res.headers.location as string);
  expect(url.origin + url.pathname).toBe('http://localhost:3000/callback');
  expect(url.searchParams.get('error')).toBe(error);
  expect(url.searchParams.get('state')).toBe('st-1');
  expect(url.searchParams.get('iss')).toBe(ISSUER);
}

describe('GET /authorize and the login page', () => {
  it('shows a login form with username, password, a CSRF token and the escaped client name, under a strict CSP', async () => {
    const { challenge } = pkce();
    const res = await request(f.app).get('/authorize').query(webuiQuery(challenge));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.text).toContain('name="username"');
    expect(res.text).toContain('name="password"');
    expect(hiddenField(res.text, 'csrf')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(res.text).toContain('Log in to Web &lt;UI&gt;');
    expect(res.headers['content-security-policy']).toMatch(/default-src 'none'.*frame-ancestors 'none'/);
    expect(res.headers['content-security-policy']).toContain("form-action 'self' http://localhost:3000");
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.text).not.toMatch(/<script(?! nonce)/);
  });

  it('logs alice in and redirects with a code, state and iss; the session cookie is HttpOnly and SameSite=Lax', async () => {
    const { challenge } = pkce();
    const { response, location, code } = await loginForCode(f.app, webuiQuery(challenge));
    expect(response.status).toBe(303);
    expect(code).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(new URL(location!).searchParams.get('state')).toBe('st-1');
    const session = ([response.headers['set-cookie']].flat() as string[]).find((c) => c.startsWith('jwtf_session='))!;
    expect(session).toMatch(/HttpOnly/);
    expect(session).toMatch(/SameSite=Lax/);
    expect(session).not.toMatch(/Secure/);
  });

  it('answers a wrong password with 401 and one generic sentence, keeping the username', async () => {
    const { challenge } = pkce();
    const wrong = await loginForCode(f.app, webuiQuery(challenge), { username: 'alice', password: 'bad' });
    const unknown = await loginForCode(f.app, webuiQuery(challenge), { username: 'mallory', password: 'bad' });
    expect(wrong.response.status).toBe(401);
    expect(wrong.response.headers['content-type']).toMatch(/^text\/html/);
    expect(wrong.response.text).toContain('Wrong username or password.');
    expect(unknown.response.text).toContain('Wrong username or password.');
    expect(wrong.response.text).toContain('value="alice"');
  });

  it('refuses a login without the CSRF cookie with 403', async () => {
    const { challenge } = pkce();
    const page = await request(f.app).get('/authorize').query(webuiQuery(challenge));
    const res = await request(f.app).post('/login').type('form').send({ csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), username: 'alice', password: 'alice-password' });
    expect(res.status).toBe(403);
    expect(res.headers.location).toBeUndefined();
  });

  it('locks the login page per user after 5 failures (429 with Retry-After), and lets the user in once the delay passed', async () => {
    const { challenge } = pkce();
    for (let i = 0; i < 5; i += 1) await loginForCode(f.app, webuiQuery(challenge), { username: 'alice', password: `bad${i}` });
    const locked = await loginForCode(f.app, webuiQuery(challenge));
    expect(locked.response.status).toBe(429);
    expect(locked.response.headers['retry-after']).toBe('30');
    f.time.advance(30_000);
    expect((await loginForCode(f.app, webuiQuery(challenge))).code).toBeDefined();
  });

  it('signs in once for two clients (SSO), and asks again with prompt=login or past max_age', async () => {
    const first = await loginForCode(f.app, webuiQuery(pkce().challenge));
    const spa = await request(f.app).get('/authorize').set('Cookie', first.jar).query({ client_id: 'spa', redirect_uri: 'http://localhost:3000/spa', response_type: 'code', scope: 'openid', code_challenge: pkce().challenge, code_challenge_method: 'S256' });
    expect(spa.status).toBe(303);
    expect(new URL(spa.headers.location as string).searchParams.get('code')).toBeTruthy();
    expect((await request(f.app).get('/authorize').set('Cookie', first.jar).query(webuiQuery(pkce().challenge, { prompt: 'login' }))).status).toBe(200);
    f.time.advance(10_000);
    expect((await request(f.app).get('/authorize').set('Cookie', first.jar).query(webuiQuery(pkce().challenge, { max_age: '10' }))).status).toBe(303);
    expect((await request(f.app).get('/authorize').set('Cookie', first.jar).query(webuiQuery(pkce().challenge, { max_age: '9' }))).status).toBe(200);
  });

  it('answers prompt=none without a session with login_required at the redirect_uri', async () => {
    expectErrorRedirect(await request(f.app).get('/authorize').query(webuiQuery(pkce().challenge, { prompt: 'none' })), 'login_required');
  });

  it('posts the code with response_mode=form_post: a form that works without JavaScript, its script allowed by nonce', async () => {
    const { response } = await loginForCode(f.app, webuiQuery(pkce().challenge, { response_mode: 'form_post' }));
    expect(response.status).toBe(200);
    expect(response.text).toContain('<form method="post" action="http://localhost:3000/callback">');
    expect(hiddenField(response.text, 'code')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(hiddenField(response.text, 'state')).toBe('st-1');
    expect(response.text).toContain('<button type="submit">');
    const nonce = /script-src 'nonce-([^']+)'/.exec(response.headers['content-security-policy'] as string)![1];
    expect(response.text).toContain(`<script nonce="${nonce}">`);
  });

  it('shows an error page and never redirects for an unknown client or a redirect_uri that differs in one character', async () => {
    for (const query of [webuiQuery(pkce().challenge, { client_id: 'nobody' }), webuiQuery(pkce().challenge, { redirect_uri: 'http://localhost:3000/callbacK' })]) {
      const res = await request(f.app).get('/authorize').query(query);
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.headers.location).toBeUndefined();
    }
  });

  it('sends other bad requests back to the redirect_uri with the RFC error', async () => {
    expectErrorRedirect(await request(f.app).get('/authorize').query(webuiQuery(pkce().challenge, { code_challenge_method: 'plain' })), 'invalid_request');
    expectErrorRedirect(await request(f.app).get('/authorize').query(webuiQuery(pkce().challenge, { response_type: 'token' })), 'unsupported_response_type');
    expectErrorRedirect(await request(f.app).get('/authorize').query(webuiQuery(pkce().challenge, { scope: 'openid admin' })), 'invalid_scope');
    expectErrorRedirect(await request(f.app).get('/authorize').query(webuiQuery(pkce().challenge, { resource: 'servicez' })), 'invalid_target');
    expectErrorRedirect(await request(f.app).get('/authorize').query(webuiQuery(pkce().challenge, { prompt: 'none login' })), 'invalid_request');
  });

  it('refuses a public client without a PKCE challenge', async () => {
    const res = await request(f.app).get('/authorize').query({ client_id: 'spa', redirect_uri: 'http://localhost:3000/spa', response_type: 'code', scope: 'openid', state: 'st-1' });
    expect(res.status).toBe(303);
    expect(new URL(res.headers.location as string).searchParams.get('error')).toBe('invalid_request');
  });

  it('answers a repeated authorization parameter with a 400 error page: the request cannot be trusted enough to redirect', async () => {
    const { challenge } = pkce();
    const qs = new URLSearchParams(webuiQuery(challenge)).toString();
    const res = await request(f.app).get(`/authorize?${qs}&scope=openid`);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.text).toContain('Parameter scope is included more than once');
    expect(res.headers.location).toBeUndefined();
  });
});

describe('redirect URIs of a native client (RFC 8252 §7.3)', () => {
  const NATIVE = `  - client_id: native
    application_type: native
    token_endpoint_auth_method: none
    redirect_uris: [http://127.0.0.1/callback, "http://[::1]/callback", http://localhost/callback]
  - client_id: web-loopback
    token_endpoint_auth_method: none
    redirect_uris: [http://127.0.0.1/callback]
`;
  beforeEach(async () => {
    await f.cleanup();
    f = await makeOidcFactory({ yaml: testConfigYaml(NATIVE) });
  });
  const ask = (clientId: string, redirectUri: string) =>
    request(f.app).get('/authorize').query({ client_id: clientId, redirect_uri: redirectUri, response_type: 'code', scope: 'openid', state: 'st-1', code_challenge: pkce().challenge, code_challenge_method: 'S256' });

  it('lets a native client pick any port on 127.0.0.1 and [::1], and redeems the code only with the very redirect_uri it asked with', async () => {
    for (const uri of ['http://127.0.0.1:51234/callback', 'http://127.0.0.1:1/callback', 'http://127.0.0.1:65535/callback', 'http://[::1]:8123/callback', 'http://127.0.0.1/callback']) {
      const res = await ask('native', uri);
      expect(res.status, uri).toBe(200);
      expect(res.text).toContain('name="password"');
    }
    // The token endpoint compares with the authorization request exactly (RFC 6749 §4.1.3):
    // another port is another URI. A refused redemption spends the code, so each try has its own.
    const redeemAt = async (asked: string, presented: string) => {
      const { verifier, challenge } = pkce();
      const { code, location } = await loginForCode(f.app, { client_id: 'native', redirect_uri: asked, response_type: 'code', scope: 'openid', state: 'st-1', code_challenge: challenge, code_challenge_method: 'S256' });
      expect(new URL(location!).origin + new URL(location!).pathname).toBe(asked);
      return request(f.app).post('/token').type('form').send({ grant_type: 'authorization_code', client_id: 'native', code: code!, redirect_uri: presented, code_verifier: verifier });
    };
    const ok = await redeemAt('http://127.0.0.1:51234/callback', 'http://127.0.0.1:51234/callback');
    expect(ok.status).toBe(200);
    expect(claimsOf(ok.body.id_token).aud).toBe('native');
    expectOAuthError(await redeemAt('http://127.0.0.1:51234/callback', 'http://127.0.0.1:51235/callback'), 400, 'invalid_grant');
    expectOAuthError(await redeemAt('http://127.0.0.1:51234/callback', 'http://127.0.0.1/callback'), 400, 'invalid_grant');
  });

  it('shows an error page, never a redirect, for another path, host, scheme, a port on localhost or a malformed port', async () => {
    for (const uri of [
      'http://127.0.0.1:51234/callbackx',
      'http://127.0.0.1:51234/other',
      'http://127.0.0.2:51234/callback',
      'https://127.0.0.1:51234/callback',
      'http://localhost:51234/callback',
      'http://127.0.0.1:0/callback',
      'http://127.0.0.1:065/callback',
      'http://127.0.0.1:65536/callback',
      'http://127.0.0.1:/callback',
      'http://127.0.0.1:80@evil.example/callback',
      'http://127.0.0.1.evil.example:80/callback',
    ]) {
      const res = await ask('native', uri);
      expect(res.status, uri).toBe(400);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.headers.location, uri).toBeUndefined();
    }
    // localhost still matches as registered, exactly (no port latitude, RFC 8252 §8.3).
    expect((await ask('native', 'http://localhost/callback')).status).toBe(200);
  });

  it('gives a web client no port latitude on the same loopback URI', async () => {
    expect((await ask('web-loopback', 'http://127.0.0.1/callback')).status).toBe(200);
    const res = await ask('web-loopback', 'http://127.0.0.1:51234/callback');
    expect(res.status).toBe(400);
    expect(res.headers.location).toBeUndefined();
  });
});

describe('the demo clients others rely on (jwt-factory/oidc.demo.yaml)', () => {
  beforeEach(async () => {
    await f.cleanup();
    f = await makeOidcFactory({ yaml: readFileSync(new URL('../../../jwt-factory/oidc.demo.yaml', import.meta.url), 'utf8') });
  });
  const query = (clientId: string, redirectUri: string, challenge: string, extra: Record<string, string> = {}) => ({ client_id: clientId, redirect_uri: redirectUri, response_type: 'code', scope: 'openid', state: 'st-1', code_challenge: challenge, code_challenge_method: 'S256', ...extra });

  it('jwt-cli logs in on a loopback port of its choice without a secret and refreshes', async () => {
    const { verifier, challenge } = pkce();
    const redirectUri = 'http://127.0.0.1:40123/callback';
    const { code } = await loginForCode(f.app, query('jwt-cli', redirectUri, challenge, { scope: 'openid profile offline_access' }));
    const tokens = await request(f.app).post('/token').type('form').send({ grant_type: 'authorization_code', client_id: 'jwt-cli', code: code!, redirect_uri: redirectUri, code_verifier: verifier });
    expect(tokens.status).toBe(200);
    const refreshed = await request(f.app).post('/token').type('form').send({ grant_type: 'refresh_token', client_id: 'jwt-cli', refresh_token: tokens.body.refresh_token });
    expect(refreshed.status).toBe(200);
    expect(claimsOf(refreshed.body.access_token)).toMatchObject({ sub: 'alice', client_id: 'jwt-cli' });
  });

  it('console is public on both of its origins; mesh-gateway is confidential with its secret and audiences serviceb, servicec', async () => {
    const { verifier, challenge } = pkce();
    for (const uri of ['http://localhost:5555/console/', 'http://127.0.0.1:5555/console/']) {
      const { code } = await loginForCode(f.app, query('console', uri, challenge));
      const res = await request(f.app).post('/token').type('form').send({ grant_type: 'authorization_code', client_id: 'console', code: code!, redirect_uri: uri, code_verifier: verifier });
      expect(res.status, uri).toBe(200);
    }
    for (const [uri, resource] of [['http://localhost:8080/callback', 'serviceb'], ['http://127.0.0.1:8080/callback', 'servicec']] as const) {
      const { code } = await loginForCode(f.app, query('mesh-gateway', uri, challenge, { scope: 'openid profile email offline_access', resource }));
      const redeem = (auth: string) => request(f.app).post('/token').type('form').set('Authorization', auth).send({ grant_type: 'authorization_code', code: code!, redirect_uri: uri, code_verifier: verifier });
      expectOAuthError(await redeem(basic('mesh-gateway', 'wrong')), 401, 'invalid_client');
      const res = await redeem(basic('mesh-gateway', 'mesh-gateway-secret'));
      expect(res.status, uri).toBe(200);
      expect(claimsOf(res.body.access_token).aud).toBe(resource);
      expect(res.body.refresh_token).toEqual(expect.any(String));
    }
    const logout = await request(f.app).get('/logout').query({ client_id: 'mesh-gateway', post_logout_redirect_uri: 'http://127.0.0.1:8080/', state: 'bye' });
    expect(logout.status).toBe(303);
    expect(logout.headers.location).toBe('http://127.0.0.1:8080/?state=bye');
  });
});

describe('POST /token with authorization_code', () => {
  it('answers an access token, an id token with nonce, at_hash, auth_time, sid, azp and a refresh token', async () => {
    const { verifier, challenge } = pkce();
    const { code } = await loginForCode(f.app, webuiQuery(challenge));
    const res = await redeem(code!, verifier);
    expect(res.status).toBe(200);
    const id = claimsOf(res.body.id_token);
    expect(id).toMatchObject({ iss: ISSUER, sub: 'alice', aud: 'webui', azp: 'webui', nonce: 'n-1', name: 'Alice Liddell', email: 'alice@example.com', groups: ['admins'] });
    expect(typeof id.sid).toBe('string');
    expect(typeof id.at_hash).toBe('string');
    expect(id.auth_time).toBe(Math.floor(f.time.clock().getTime() / 1000));
    expect(claimsOf(res.body.access_token)).toMatchObject({ sub: 'alice', aud: 'serviceb', client_id: 'webui', scope: 'openid profile email' });
    expect(typeof res.body.refresh_token).toBe('string');
  });

  it('accepts a code 59.999 s old and refuses it at 60 s with invalid_grant', async () => {
    const a = pkce();
    const b = pkce();
    const young = await loginForCode(f.app, webuiQuery(a.challenge));
    f.time.advance(59_999);
    expect((await redeem(young.code!, a.verifier)).status).toBe(200);
    const old = await loginForCode(f.app, webuiQuery(b.challenge));
    f.time.advance(60_000);
    expectOAuthError(await redeem(old.code!, b.verifier), 400, 'invalid_grant');
  });

  it('refuses a replayed code with invalid_grant and revokes the refresh token it issued', async () => {
    const { verifier, challenge } = pkce();
    const { code } = await loginForCode(f.app, webuiQuery(challenge));
    const first = await redeem(code!, verifier);
    expectOAuthError(await redeem(code!, verifier), 400, 'invalid_grant');
    expectOAuthError(await refresh(first.body.refresh_token), 400, 'invalid_grant');
    const introspection = await request(f.app).post('/introspect').type('form').set('Authorization', basic('servicea', 'servicea-secret')).send({ token: first.body.access_token });
    expect(introspection.body).toEqual({ active: false });
  });

  it('refuses a wrong verifier, a missing verifier and a redirect_uri one character longer, each with invalid_grant', async () => {
    const cases: Array<Record<string, string>> = [{ code_verifier: pkce().verifier }, { code_verifier: '' }, { redirect_uri: 'http://localhost:3000/callback/' }];
    for (const extra of cases) {
      const { verifier, challenge } = pkce();
      const { code } = await loginForCode(f.app, webuiQuery(challenge));
      expectOAuthError(await redeem(code!, verifier, extra), 400, 'invalid_grant');
    }
  });

  it('refuses a code issued to webui when another client presents it, with invalid_grant', async () => {
    const yamlClient = '  - client_id: other\n    client_secret: other-secret\n    redirect_uris: [http://localhost:3000/callback]\n';
    await f.cleanup();
    f = await makeOidcFactory({ yaml: (await import('./harness.js')).testConfigYaml(yamlClient) });
    const { verifier, challenge } = pkce();
    const { code } = await loginForCode(f.app, webuiQuery(challenge));
    expectOAuthError(await redeem(code!, verifier, {}, basic('other', 'other-secret')), 400, 'invalid_grant');
  });
});

describe('POST /token with refresh_token', () => {
  async function tokens() {
    const { verifier, challenge } = pkce();
    const { code } = await loginForCode(f.app, webuiQuery(challenge, { scope: 'openid offline_access' }));
    return (await redeem(code!, verifier)).body as { refresh_token: string; access_token: string };
  }

  it('rotates the refresh token on every use', async () => {
    const first = await tokens();
    const second = await refresh(first.refresh_token);
    expect(second.status).toBe(200);
    expect(second.body.refresh_token).not.toBe(first.refresh_token);
    expect(claimsOf(second.body.id_token).sub).toBe('alice');
    expect((await refresh(second.body.refresh_token)).status).toBe(200);
  });

  it('revokes the whole family when a rotated token is used again (RFC 9700 §4.14.2)', async () => {
    const first = await tokens();
    const second = await refresh(first.refresh_token);
    expectOAuthError(await refresh(first.refresh_token), 400, 'invalid_grant');
    expectOAuthError(await refresh(second.body.refresh_token), 400, 'invalid_grant');
  });

  it('refuses a refresh token of another client without burning it', async () => {
    const first = await tokens();
    expectOAuthError(await refresh(first.refresh_token, basic('cli', 'cli-secret')), 400, 'invalid_grant');
    expect((await refresh(first.refresh_token)).status).toBe(200);
  });

  it('accepts a refresh token until its lifetime ends, and refuses it from then on', async () => {
    const a = await tokens();
    f.time.advance(86_400_000 - 1);
    expect((await refresh(a.refresh_token)).status).toBe(200);
    const b = await tokens();
    f.time.advance(86_400_000);
    expectOAuthError(await refresh(b.refresh_token), 400, 'invalid_grant');
  });

  it('keeps sessions and refresh tokens across a restart: a new provider over the same KEYS_DIR honours them', async () => {
    const first = await tokens();
    const login = await loginForCode(f.app, webuiQuery(pkce().challenge));
    const restarted = await makeOidcFactory({ dir: f.dir, start: f.time.clock() });
    const res = await request(restarted.app).post('/token').type('form').set('Authorization', basic('webui', 'webui-secret')).send({ grant_type: 'refresh_token', refresh_token: first.refresh_token });
    expect(res.status).toBe(200);
    expect(claimsOf(res.body.access_token).sub).toBe('alice');
    const sso = await request(restarted.app).get('/authorize').set('Cookie', login.jar).query(webuiQuery(pkce().challenge));
    expect(sso.status).toBe(303);
    expect(new URL(sso.headers.location as string).searchParams.get('code')).toBeTruthy();
  });

  it('keeps codes, sessions and refresh tokens on disk, hashed, mode 0600', async () => {
    const first = await tokens();
    const { readFile, stat } = await import('node:fs/promises');
    const file = `${f.dir}/oidc/state.json`;
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, 'utf8');
    expect(text).not.toContain(first.refresh_token);
    expect(Object.keys(JSON.parse(text).refresh)).toHaveLength(1);
  });
});

describe('cookies under https', () => {
  it('marks the session cookie Secure when PUBLIC_URL is https', async () => {
    await f.cleanup();
    f = await makeOidcFactory({ env: { PUBLIC_URL: 'https://factory.test' } });
    const { response } = await loginForCode(f.app, webuiQuery(pkce().challenge));
    expect(cookieJar('', response.headers['set-cookie'])).toContain('jwtf_session=');
    expect(([response.headers['set-cookie']].flat() as string[]).find((c) => c.startsWith('jwtf_session='))).toMatch(/; Secure/);
  });
});
