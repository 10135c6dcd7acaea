import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFactoryConfig } from '../../jwt-factory/config.js';
import { epochSeconds } from '../../lib/jwt.js';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runScript, startProcess } from '../helpers/process.js';
import { makeFactory } from './harness.js';
import { basic, claimsOf, ISSUER, makeOidcFactory } from './oidc/harness.js';

/** Clients of the issue: a service owning its keyId, one owning two, a public one, an admin, a password client. */
async function accessYaml() {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), alg: 'ES256', kid: 'signer-1' };
  const yaml = `clients:
  - client_id: servicea
    client_secret: servicea-secret
    grant_types: [client_credentials]
    scope: factory:issue
    audiences: [serviceb, servicec, ${ISSUER}]
  - client_id: poster
    client_secret: poster-secret
    token_endpoint_auth_method: client_secret_post
    grant_types: [client_credentials]
    key_ids: [poster-a, poster-b]
    audiences: [serviceb]
  - client_id: signer
    token_endpoint_auth_method: private_key_jwt
    grant_types: [client_credentials]
    audiences: [serviceb]
    jwks: { keys: [${JSON.stringify(jwk)}] }
  - client_id: spa
    redirect_uris: [http://localhost:3000/spa]
    grant_types: [authorization_code]
    token_endpoint_auth_method: none
  - client_id: ops
    client_secret: ops-secret
    grant_types: [client_credentials]
    scope: factory:admin
    audiences: [${ISSUER}]
  - client_id: cli
    client_secret: cli-secret
    grant_types: [password]
    audiences: [${ISSUER}]
users:
  - username: alice
    password: alice-password
`;
  return { yaml, privateKey };
}

let f: Awaited<ReturnType<typeof makeOidcFactory>>;
let signerKey: CryptoKey;
beforeAll(async () => {
  const { yaml, privateKey } = await accessYaml();
  signerKey = privateKey as CryptoKey;
  f = await makeOidcFactory({ yaml, env: { ISSUE_AUTH: 'client' } });
});
afterAll(() => f.cleanup());

const expectError = (res: request.Response, status: number, code: string) => {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.body.error.code).toBe(code);
};

/** A client_credentials access token of `client` for the factory itself (aud = its issuer). */
async function accessToken(client: string, secret: string, resource = ISSUER): Promise<string> {
  const res = await request(f.app).post('/token').type('form').set('Authorization', basic(client, secret)).send({ grant_type: 'client_credentials', resource });
  expect(res.status).toBe(200);
  return res.body.access_token as string;
}

describe('ISSUE_AUTH: the mode and its default', () => {
  it('is open on the default HOST 127.0.0.1 and on ::1, client on 0.0.0.0, and open when set so', () => {
    expect(loadFactoryConfig({}).HOST).toBe('127.0.0.1');
    expect(loadFactoryConfig({}).ISSUE_AUTH).toBe('open');
    expect(loadFactoryConfig({ HOST: '::1' }).ISSUE_AUTH).toBe('open');
    expect(loadFactoryConfig({ HOST: '0.0.0.0', OIDC_CONFIG: 'x.yaml' }).ISSUE_AUTH).toBe('client');
    expect(loadFactoryConfig({ HOST: '0.0.0.0', ISSUE_AUTH: 'open' }).ISSUE_AUTH).toBe('open');
    expect(loadFactoryConfig({ HOST: '127.0.0.1', ISSUE_AUTH: 'client', OIDC_CONFIG: 'x.yaml' }).ISSUE_AUTH).toBe('client');
  });

  it('stops start-up with a sentence naming ISSUE_AUTH when client mode has no clients (OIDC_CONFIG) or the value is unknown', () => {
    expect(() => loadFactoryConfig({ HOST: '0.0.0.0' })).toThrow(/^Invalid setting ISSUE_AUTH: client \(the default when HOST 0\.0\.0\.0 is not loopback\) needs OIDC_CONFIG/);
    expect(() => loadFactoryConfig({ ISSUE_AUTH: 'client' })).toThrow(/^Invalid setting ISSUE_AUTH: client needs OIDC_CONFIG/);
    expect(() => loadFactoryConfig({ ISSUE_AUTH: 'anyone' })).toThrow('Invalid setting ISSUE_AUTH: must be open or client (got "anyone")');
  });

  it('starts an explicit ISSUE_AUTH=open on 0.0.0.0 with one warning line saying what it exposes, and none on loopback', async () => {
    const exposed = await startProcess('jwt-factory/main.ts', { env: { PORT: '0', HOST: '0.0.0.0', ISSUE_AUTH: 'open', KEYS_DIR: f.dir } });
    const loopback = await startProcess('jwt-factory/main.ts', { env: { PORT: '0', KEYS_DIR: f.dir } });
    try {
      const warnings = exposed.output().split('\n').filter((line) => line.includes('"level":40'));
      expect(warnings).toHaveLength(1);
      expect(JSON.parse(warnings[0]!).msg).toBe('ISSUE_AUTH=open on 0.0.0.0: anyone who reaches this address can mint tokens for any keyId with any sub, iss and aud, and create, rotate and dump keys');
      expect(loopback.listening.host).toBe('127.0.0.1');
      expect(loopback.output()).not.toContain('ISSUE_AUTH=open');
    } finally {
      await Promise.all([exposed.stop(), loopback.stop()]);
    }
  });
});

describe('OIDC_CONFIG key_ids', () => {
  it("stops start-up with one sentence, exit 1, when a client's key_ids name the provider's own key", async () => {
    const file = path.join(f.dir, 'reserved.yaml');
    await writeFile(file, 'clients:\n  - client_id: servicea\n    client_secret: s\n    grant_types: [client_credentials]\n    key_ids: [servicea, oidc]\n');
    const { code, stderr } = await runScript('jwt-factory/main.ts', [], { env: { PORT: '0', KEYS_DIR: f.dir, OIDC_CONFIG: file } });
    expect(code).toBe(1);
    expect(stderr).toBe(`jwt-factory: Invalid setting OIDC_CONFIG: ${file}: clients[0].key_ids: must not name OIDC_KEY_ID (oidc), the provider's own key.\n`);
  });
});

describe('ISSUE_AUTH=open (the original sample on loopback)', () => {
  it("still mints whatever the body says, but /verify checks the factory's own issuer whatever the body's iss", async () => {
    const open = await makeFactory();
    try {
      const issued = await request(open.app).post('/issueToken/servicea').send({ sub: 'admin', iss: 'https://evil/', aud: 'serviceb' });
      expect(issued.status).toBe(200);
      expect(claimsOf(issued.text)).toMatchObject({ sub: 'admin', iss: 'https://evil/' });
      const widened = await request(open.app).post('/verify/servicea').send({ token: issued.text, aud: 'serviceb', sub: 'admin', iss: 'https://evil/' });
      expect(widened.status).toBe(403);
      expect(widened.body).toMatchObject({ valid: false, error: { name: 'JsonWebTokenError', code: 'issuer_invalid' } });
      const own = (await request(open.app).post('/issueToken/servicea').send({ aud: 'serviceb' })).text;
      const verified = await request(open.app).post('/verify/servicea').send({ token: own, aud: 'serviceb', sub: 'servicea', iss: 'https://jwt-factory/' });
      expect(verified.status).toBe(200);
      expect(verified.body.valid).toBe(true);
      expect((await request(open.app).post('/keys/servicea/rotate')).status).toBe(200);
    } finally {
      await open.cleanup();
    }
  });
});

describe('ISSUE_AUTH=client: POST /issueToken/:keyId', () => {
  it('answers 401 invalid_client with Basic and Bearer challenges to an anonymous caller, a wrong secret and a public client', async () => {
    for (const res of [
      await request(f.app).post('/issueToken/servicea').send({ aud: 'serviceb' }),
      await request(f.app).post('/issueToken/servicea').set('Authorization', basic('servicea', 'wrong')).send({}),
      await request(f.app).post('/issueToken/spa').send({ client_id: 'spa' }),
    ]) {
      expectError(res, 401, 'invalid_client');
      expect(res.headers['www-authenticate']).toBe('Basic realm="jwt-factory", Bearer realm="jwt-factory"');
    }
  });

  it("issues for the client's own keyId with sub = the client, iss = the factory and aud defaulting to its first audience", async () => {
    const res = await request(f.app).post('/issueToken/servicea').set('Authorization', basic('servicea', 'servicea-secret')).send({ role: 'reader' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(claimsOf(res.text)).toMatchObject({ sub: 'servicea', iss: ISSUER, aud: 'serviceb', role: 'reader' });
    const verified = await request(f.app).post('/verify/servicea').send({ token: res.text, aud: 'serviceb', sub: 'servicea' });
    expect(verified.body.valid).toBe(true);
  });

  it('authenticates client_secret_post from the JSON body (never copied into the token) and private_key_jwt, for any keyId of key_ids', async () => {
    const posted = await request(f.app).post('/issueToken/poster-b').send({ client_id: 'poster', client_secret: 'poster-secret', aud: ['serviceb'] });
    expect(posted.status).toBe(200);
    const claims = claimsOf(posted.text);
    expect(claims).toMatchObject({ sub: 'poster', aud: ['serviceb'] });
    expect(claims).not.toHaveProperty('client_secret');
    expect(claims).not.toHaveProperty('client_id');
    const now = epochSeconds(f.time.clock());
    const assertion = await new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES256', kid: 'signer-1' })
      .setIssuer('signer')
      .setSubject('signer')
      .setAudience(ISSUER)
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .sign(signerKey);
    const signed = await request(f.app).post('/issueToken/signer').send({ client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion });
    expect(signed.status).toBe(200);
    expect(claimsOf(signed.text)).toMatchObject({ sub: 'signer', aud: 'serviceb' });
    // RFC 7523 §3: the same assertion twice is a replay.
    expectError(await request(f.app).post('/issueToken/signer').send({ client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion }), 401, 'invalid_client');
  });

  it("accepts the client's own access token for this factory as a bearer token, and refuses one for another audience and a user's", async () => {
    const own = await request(f.app).post('/issueToken/servicea').set('Authorization', `Bearer ${await accessToken('servicea', 'servicea-secret')}`).send({ aud: 'servicec' });
    expect(own.status).toBe(200);
    expect(claimsOf(own.text)).toMatchObject({ sub: 'servicea', aud: 'servicec' });
    const forServiceb = await request(f.app).post('/issueToken/servicea').set('Authorization', `Bearer ${await accessToken('servicea', 'servicea-secret', 'serviceb')}`).send({});
    expectError(forServiceb, 401, 'invalid_token');
    const user = await request(f.app).post('/token').type('form').set('Authorization', basic('cli', 'cli-secret')).send({ grant_type: 'password', username: 'alice', password: 'alice-password', scope: 'openid', resource: ISSUER });
    expect(user.status).toBe(200);
    expectError(await request(f.app).post('/issueToken/cli').set('Authorization', `Bearer ${user.body.access_token}`).send({}), 403, 'access_denied');
  });

  it("answers 403 key_not_owned for another client's keyId, the provider's keyId and an unknown one", async () => {
    for (const keyId of ['serviceb', 'oidc', 'poster-a']) {
      const res = await request(f.app).post(`/issueToken/${keyId}`).set('Authorization', basic('servicea', 'servicea-secret')).send({});
      expectError(res, 403, 'key_not_owned');
    }
  });

  it('answers 400 claim_not_allowed to a body setting sub or iss, and 403 audience_not_allowed outside its audiences', async () => {
    const as = (body: object) => request(f.app).post('/issueToken/servicea').set('Authorization', basic('servicea', 'servicea-secret')).send(body);
    for (const body of [{ sub: 'admin' }, { iss: 'https://evil/' }, { sub: 'servicea' }]) {
      const res = await as(body);
      expectError(res, 400, 'claim_not_allowed');
      expect(res.body.error.claim).toBe(Object.keys(body)[0]);
    }
    expectError(await as({ aud: 'admin-api' }), 403, 'audience_not_allowed');
    expectError(await as({ aud: ['serviceb', 'admin-api'] }), 403, 'audience_not_allowed');
    expectError(await as({ aud: 42 }), 400, 'invalid_claims');
    expectError(await as(['not', 'claims']), 400, 'invalid_claims');
  });
});

describe('ISSUE_AUTH=client: creating, rotating and dumping keys need scope factory:admin', () => {
  it('answers 401 with a Bearer challenge without credentials, 403 insufficient_scope with a client that is no admin, 200 with an admin token', async () => {
    const admin = await accessToken('ops', 'ops-secret');
    const service = await accessToken('servicea', 'servicea-secret');
    await request(f.app).post('/issueToken/servicea').set('Authorization', basic('servicea', 'servicea-secret')).send({});
    for (const [method, path] of [['post', '/keys/servicea/rotate'], ['post', '/utils/dump'], ['post', '/dump'], ['get', '/keys/brand-new'], ['post', '/keys/brand-new']] as const) {
      const anonymous = await request(f.app)[method](path);
      expectError(anonymous, 401, 'invalid_token');
      expect(anonymous.headers['www-authenticate']).toBe('Bearer realm="jwt-factory", scope="factory:admin"');
      const bad = await request(f.app)[method](path).set('Authorization', 'Bearer not.a.token');
      expectError(bad, 401, 'invalid_token');
      for (const credential of [basic('servicea', 'servicea-secret'), `Bearer ${service}`]) {
        const wrong = await request(f.app)[method](path).set('Authorization', credential);
        expectError(wrong, 403, 'insufficient_scope');
        expect(wrong.headers['www-authenticate']).toBe('Bearer realm="jwt-factory", error="insufficient_scope", scope="factory:admin"');
      }
    }
    expect((await request(f.app).get('/keys/brand-new')).status).toBe(401);
    expect((await request(f.app).post('/keys/servicea/rotate').set('Authorization', `Bearer ${admin}`)).status).toBe(200);
    expect((await request(f.app).post('/utils/dump').set('Authorization', `Bearer ${admin}`)).status).toBe(200);
    const created = await request(f.app).post('/keys/brand-new').set('Authorization', `Bearer ${admin}`);
    expect(created.status).toBe(200);
    expect(created.body.created).toBe(true);
    // An existing key's public half stays readable by anyone, as the JWKS is.
    const read = await request(f.app).get('/keys/brand-new');
    expect(read.status).toBe(200);
    expect(read.body.created).toBe(false);
  });

  it("verifies only the factory's own issuer: a body's iss other than ISSUER is 403 issuer_invalid", async () => {
    const token = (await request(f.app).post('/issueToken/servicea').set('Authorization', basic('servicea', 'servicea-secret')).send({})).text;
    const res = await request(f.app).post('/verify/servicea').send({ token, aud: 'serviceb', sub: 'servicea', iss: 'https://evil/' });
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toMatchObject({ valid: false, error: { code: 'issuer_invalid' } });
  });
});
