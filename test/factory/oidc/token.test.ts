import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { basic, expectOAuthError, claimsOf, headerOf, makeOidcFactory, ISSUER } from './harness.js';

type Factory = Awaited<ReturnType<typeof makeOidcFactory>>;
let f: Factory;
beforeEach(async () => {
  f = await makeOidcFactory();
});
afterEach(async () => {
  await f.cleanup();
});

const token = (body: string | Record<string, string>, auth?: string) => {
  const r = request(f.app).post('/token').type('form');
  if (auth) r.set('Authorization', auth);
  return r.send(body);
};


describe('POST /token with the password grant', () => {
  it("answers the WSO2 seed's verbatim curl (Basic client auth, scope=openid) with an id_token and an access_token", async () => {
    const res = await request(f.app)
      .post('/token')
      .set('Authorization', basic('cli', 'cli-secret'))
      .set('Content-Type', 'application/x-www-form-urlencoded')
      .send('grant_type=password&username=alice&password=alice-password&scope=openid');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 600, scope: 'openid' });
    const id = claimsOf(res.body.id_token);
    expect(id).toMatchObject({ iss: ISSUER, sub: 'alice', aud: 'cli', azp: 'cli' });
    expect(typeof id.at_hash).toBe('string');
    const at = claimsOf(res.body.access_token);
    expect(headerOf(res.body.access_token).typ).toBe('at+jwt');
    expect(at).toMatchObject({ iss: ISSUER, sub: 'alice', aud: 'serviceb', client_id: 'cli', scope: 'openid', groups: ['admins'] });
    expect(at.auth_time).toBe(at.iat);
    expect(typeof res.body.refresh_token).toBe('string');
  });

  it('answers 400 invalid_grant with one sentence for a wrong password and an unknown user alike', async () => {
    const wrong = await token({ grant_type: 'password', username: 'alice', password: 'nope' }, basic('cli', 'cli-secret'));
    const unknown = await token({ grant_type: 'password', username: 'mallory', password: 'nope' }, basic('cli', 'cli-secret'));
    expectOAuthError(wrong, 400, 'invalid_grant');
    expectOAuthError(unknown, 400, 'invalid_grant');
    expect(wrong.body.error_description).toBe(unknown.body.error_description);
  });

  it('locks a user out after 5 failures, for 30 s exactly, even for the right password', async () => {
    for (let i = 0; i < 5; i += 1) await token({ grant_type: 'password', username: 'alice', password: `bad-${i}` }, basic('cli', 'cli-secret'));
    const locked = await token({ grant_type: 'password', username: 'alice', password: 'alice-password' }, basic('cli', 'cli-secret'));
    expectOAuthError(locked, 400, 'invalid_grant');
    expect(locked.body.error_description).toMatch(/try again in 30 seconds/);
    f.time.advance(29_999);
    expectOAuthError(await token({ grant_type: 'password', username: 'alice', password: 'alice-password' }, basic('cli', 'cli-secret')), 400, 'invalid_grant');
    f.time.advance(1);
    expect((await token({ grant_type: 'password', username: 'alice', password: 'alice-password' }, basic('cli', 'cli-secret'))).status).toBe(200);
  });

  it('refuses a client that did not register the password grant with 400 unauthorized_client', async () => {
    expectOAuthError(await token({ grant_type: 'password', username: 'alice', password: 'alice-password' }, basic('servicea', 'servicea-secret')), 400, 'unauthorized_client');
  });
});

describe('POST /token with client_credentials', () => {
  it('answers an RFC 9068 access token whose sub is the client and aud the first audience', async () => {
    const res = await token({ grant_type: 'client_credentials' }, basic('servicea', 'servicea-secret'));
    expect(res.status).toBe(200);
    expect(res.body.id_token).toBeUndefined();
    expect(res.body.refresh_token).toBeUndefined();
    expect(headerOf(res.body.access_token)).toMatchObject({ typ: 'at+jwt', alg: 'ES256' });
    const at = claimsOf(res.body.access_token);
    expect(at).toMatchObject({ iss: ISSUER, sub: 'servicea', aud: 'serviceb', client_id: 'servicea' });
    expect(at.exp).toBe((at.iat as number) + 600);
    expect(at.auth_time).toBeUndefined();
  });

  it('picks the audience named by resource (RFC 8707) or audience, and refuses others with invalid_target', async () => {
    expect(claimsOf((await token({ grant_type: 'client_credentials', resource: 'servicec' }, basic('servicea', 'servicea-secret'))).body.access_token).aud).toBe('servicec');
    expect(claimsOf((await token({ grant_type: 'client_credentials', audience: 'servicec' }, basic('servicea', 'servicea-secret'))).body.access_token).aud).toBe('servicec');
    expectOAuthError(await token({ grant_type: 'client_credentials', resource: 'servicez' }, basic('servicea', 'servicea-secret')), 400, 'invalid_target');
    expectOAuthError(await token('grant_type=client_credentials&resource=serviceb&resource=servicec', basic('servicea', 'servicea-secret')), 400, 'invalid_target');
  });

  it('accepts client_secret_post and form-urlencoded Basic credentials (RFC 6749 §2.3.1)', async () => {
    expect((await token({ grant_type: 'client_credentials', client_id: 'poster', client_secret: 'p@ss:w rd&=' })).status).toBe(200);
    const raw = `Basic ${Buffer.from('servicea:servicea-secret').toString('base64')}`;
    expect((await token({ grant_type: 'client_credentials' }, raw)).status).toBe(200);
  });

  it('refuses the method a client did not register with 401 invalid_client', async () => {
    expectOAuthError(await token({ grant_type: 'client_credentials' }, basic('poster', 'p@ss:w rd&=')), 401, 'invalid_client');
  });

  it('answers a wrong secret with 401 invalid_client and a Basic WWW-Authenticate challenge', async () => {
    const res = await token({ grant_type: 'client_credentials' }, basic('servicea', 'servicea-secreT'));
    expectOAuthError(res, 401, 'invalid_client');
    expect(res.headers['www-authenticate']).toMatch(/^Basic realm="jwt-factory"/);
  });

  it('answers an unknown client with 401 invalid_client', async () => {
    expectOAuthError(await token({ grant_type: 'client_credentials' }, basic('nobody', 'x')), 401, 'invalid_client');
    expectOAuthError(await token({ grant_type: 'client_credentials' }), 401, 'invalid_client');
  });
});

describe('POST /token refuses bad requests with the RFC error, never a 500', () => {
  it('answers an unknown grant_type with 400 unsupported_grant_type', async () => {
    expectOAuthError(await token({ grant_type: 'urn:example:magic' }, basic('servicea', 'servicea-secret')), 400, 'unsupported_grant_type');
  });

  it('answers a missing grant_type with 400 invalid_request', async () => {
    expectOAuthError(await token({}, basic('servicea', 'servicea-secret')), 400, 'invalid_request');
  });

  it('answers a repeated parameter with 400 invalid_request (RFC 6749 §3.1)', async () => {
    expectOAuthError(await token('grant_type=client_credentials&grant_type=client_credentials', basic('servicea', 'servicea-secret')), 400, 'invalid_request');
    expectOAuthError(await token('grant_type=client_credentials&scope=a&scope=b', basic('servicea', 'servicea-secret')), 400, 'invalid_request');
  });

  it('answers two authentication methods at once with 400 invalid_request', async () => {
    expectOAuthError(await token({ grant_type: 'client_credentials', client_secret: 'servicea-secret' }, basic('servicea', 'servicea-secret')), 400, 'invalid_request');
  });

  it('answers a JSON body with 400 invalid_request', async () => {
    const res = await request(f.app).post('/token').set('Authorization', basic('servicea', 'servicea-secret')).send({ grant_type: 'client_credentials' });
    expectOAuthError(res, 400, 'invalid_request');
  });

  it('answers an oversized form with 413 invalid_request', async () => {
    const res = await token(`grant_type=client_credentials&scope=${'a'.repeat(200_000)}`, basic('servicea', 'servicea-secret'));
    expectOAuthError(res, 413, 'invalid_request');
  });

  it('answers a malformed Basic header with 401 invalid_client and malformed percent-encoding with 400 invalid_request', async () => {
    expectOAuthError(await token({ grant_type: 'client_credentials' }, 'Basic !!!'), 401, 'invalid_client');
    expectOAuthError(await token({ grant_type: 'client_credentials' }, `Basic ${Buffer.from('servicea:%zz').toString('base64')}`), 400, 'invalid_request');
  });

  it('refuses a user scope for client_credentials with 400 invalid_scope', async () => {
    expectOAuthError(await token({ grant_type: 'client_credentials', scope: 'openid' }, basic('servicea', 'servicea-secret')), 400, 'invalid_scope');
  });
});

describe('GET /.well-known/openid-configuration with OIDC_CONFIG', () => {
  it('names every endpoint absolute under PUBLIC_URL and S256 as the only PKCE method', async () => {
    const res = await request(f.app).get('/.well-known/openid-configuration');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toMatchObject({
      issuer: ISSUER,
      jwks_uri: `${ISSUER}/.well-known/jwks.json`,
      authorization_endpoint: `${ISSUER}/authorize`,
      token_endpoint: `${ISSUER}/token`,
      userinfo_endpoint: `${ISSUER}/userinfo`,
      introspection_endpoint: `${ISSUER}/introspect`,
      revocation_endpoint: `${ISSUER}/revoke`,
      end_session_endpoint: `${ISSUER}/logout`,
      response_types_supported: ['code'],
      code_challenge_methods_supported: ['S256'],
      id_token_signing_alg_values_supported: ['ES256'],
      subject_types_supported: ['public'],
    });
    expect(res.body.grant_types_supported).toEqual(expect.arrayContaining(['authorization_code', 'refresh_token', 'client_credentials', 'password', 'urn:ietf:params:oauth:grant-type:token-exchange']));
    expect(res.body.token_endpoint_auth_methods_supported).toEqual(['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none']);
    expect(res.body.claims_supported).toEqual(expect.arrayContaining(['email', 'groups']));
  });

  it('publishes the OIDC signing key in the JWKS like every other key', async () => {
    const at = (await token({ grant_type: 'client_credentials' }, basic('servicea', 'servicea-secret'))).body.access_token as string;
    const jwks = await request(f.app).get('/.well-known/jwks.json');
    expect(jwks.body.keys.map((k: { kid: string }) => k.kid)).toContain(headerOf(at).kid);
    expect((await request(f.app).get('/utils/keys')).body).toContain('oidc');
  });
});

describe('POST /issueToken/:keyId with OIDC_CONFIG', () => {
  it("refuses the provider's own keyId with 403 key_reserved, and still issues for other keyIds", async () => {
    const res = await request(f.app).post('/issueToken/oidc').send({ sub: 'alice' });
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.error.code).toBe('key_reserved');
    expect((await request(f.app).post('/issueToken/servicea').send({})).status).toBe(200);
  });
});

describe('discovery at the issuer path', () => {
  it('serves the OIDC document at ISSUER + /.well-known/openid-configuration when ISSUER has a path', async () => {
    await f.cleanup();
    f = await makeOidcFactory({ env: { ISSUER: 'http://factory.test:5555/realms/demo' } });
    const res = await request(f.app).get('/realms/demo/.well-known/openid-configuration');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toMatchObject({ issuer: 'http://factory.test:5555/realms/demo', token_endpoint: `${ISSUER}/token` });
  });
});
