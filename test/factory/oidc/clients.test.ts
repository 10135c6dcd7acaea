import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import * as oauth from 'oauth4webapi';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseOidcConfig } from '../../../jwt-factory/oidc/config.js';
import { secretMatches, storedSecret } from '../../../jwt-factory/oidc/secrets.js';
import { freePort, ROOT, runScript, startProcess, type Started } from '../../helpers/process.js';
import { cookieJar, hiddenField, testConfigYaml } from './harness.js';

/**
 * Real OIDC client libraries against a real factory process: openid-client v6 and
 * oauth4webapi do their own discovery, id token and access token validation.
 */

let factory: Started;
let dir: string;
let issuer: string;
let signerKey: CryptoKey;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'oidc-clients-'));
  const pair = await generateKeyPair('ES256', { extractable: true });
  signerKey = pair.privateKey as CryptoKey;
  const jwk = { ...(await exportJWK(pair.publicKey)), alg: 'ES256' };
  const extra = `  - client_id: signer\n    token_endpoint_auth_method: private_key_jwt\n    grant_types: [client_credentials]\n    audiences: [serviceb]\n    jwks: { keys: [${JSON.stringify(jwk)}] }\n`;
  await writeFile(path.join(dir, 'oidc.yaml'), testConfigYaml(extra));
  const port = await freePort();
  issuer = `http://127.0.0.1:${port}`;
  factory = await startProcess('jwt-factory/main.ts', {
    env: { PORT: String(port), HOST: '127.0.0.1', KEYS_DIR: path.join(dir, 'keys'), ISSUER: issuer, PUBLIC_URL: issuer, OIDC_CONFIG: path.join(dir, 'oidc.yaml') },
  });
}, 30_000);

afterAll(async () => {
  await factory?.stop();
  await rm(dir, { recursive: true, force: true });
});

const discover = (clientId: string, secret?: string, auth?: client.ClientAuth) =>
  client.discovery(new URL(issuer), clientId, secret, auth, { execute: [client.allowInsecureRequests] });

/** The browser's part over plain HTTP: the authorization URL, the login form, the redirect with the code. */
async function logIn(url: URL, username = 'alice', password = 'alice-password'): Promise<URL> {
  const page = await fetch(url, { redirect: 'manual' });
  expect(page.status).toBe(200);
  const html = await page.text();
  const jar = cookieJar('', page.headers.getSetCookie());
  const posted = await fetch(`${issuer}/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: jar },
    body: new URLSearchParams({ csrf: hiddenField(html, 'csrf'), request: hiddenField(html, 'request'), username, password }),
  });
  expect(posted.status).toBe(303);
  return new URL(posted.headers.get('location')!);
}

describe('openid-client v6 against the factory', () => {
  it('discovers the provider, runs the code flow with PKCE and nonce, validates the id token, reads userinfo', async () => {
    // webui registered client_secret_basic; openid-client would otherwise default to client_secret_post.
    const config = await discover('webui', 'webui-secret', client.ClientSecretBasic('webui-secret'));
    expect(config.serverMetadata().token_endpoint).toBe(`${issuer}/token`);
    const verifier = client.randomPKCECodeVerifier();
    const nonce = client.randomNonce();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: 'http://localhost:3000/callback',
      scope: 'openid profile email offline_access',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      nonce,
      state,
    });
    const callback = await logIn(url);
    const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedNonce: nonce, expectedState: state, idTokenExpected: true });
    const claims = tokens.claims()!;
    expect(claims).toMatchObject({ iss: issuer, sub: 'alice', aud: 'webui', nonce, name: 'Alice Liddell' });
    const info = await client.fetchUserInfo(config, tokens.access_token, 'alice');
    expect(info).toMatchObject({ sub: 'alice', email: 'alice@example.com', name: 'Alice Liddell' });

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.claims()!.sub).toBe('alice');
    // Reuse of the rotated token revokes the family: the newest token dies with it.
    await expect(client.refreshTokenGrant(config, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant', status: 400 });
    await expect(client.refreshTokenGrant(config, refreshed.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });

    const introspection = await client.tokenIntrospection(await discover('servicea', 'servicea-secret', client.ClientSecretBasic('servicea-secret')), tokens.access_token);
    expect(introspection).toMatchObject({ active: true, sub: 'alice', client_id: 'webui' });
    await client.tokenRevocation(config, tokens.access_token);
    expect((await client.tokenIntrospection(await discover('servicea', 'servicea-secret', client.ClientSecretBasic('servicea-secret')), tokens.access_token)).active).toBe(false);

    const logout = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: 'http://localhost:3000/', state: 'bye' });
    const out = await fetch(logout, { redirect: 'manual' });
    expect(out.status).toBe(303);
    expect(out.headers.get('location')).toBe('http://localhost:3000/?state=bye');
  });

  it("runs the WSO2 seed's password grant (Basic client auth) and gets an id_token it validates", async () => {
    const config = await discover('cli', 'cli-secret', client.ClientSecretBasic('cli-secret'));
    const tokens = await client.genericGrantRequest(config, 'password', { username: 'alice', password: 'alice-password', scope: 'openid' });
    expect(tokens.claims()).toMatchObject({ iss: issuer, sub: 'alice', aud: 'cli' });
    await expect(client.genericGrantRequest(config, 'password', { username: 'alice', password: 'nope', scope: 'openid' })).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('authenticates with private_key_jwt, and answers 401 with a challenge to an assertion signed by another key', async () => {
    const config = await discover('signer', undefined, client.PrivateKeyJwt(signerKey));
    const tokens = await client.clientCredentialsGrant(config);
    expect(tokens.token_type).toBe('bearer');
    const wrong = await discover('signer', undefined, client.PrivateKeyJwt((await generateKeyPair('ES256')).privateKey));
    await expect(client.clientCredentialsGrant(wrong)).rejects.toMatchObject({ code: 'OAUTH_WWW_AUTHENTICATE_CHALLENGE', status: 401 });
  });
});

describe('oauth4webapi against the factory', () => {
  it('gets a client_credentials token that validateJwtAccessToken accepts as RFC 9068', async () => {
    const as = await oauth.processDiscoveryResponse(new URL(issuer), await oauth.discoveryRequest(new URL(issuer), { [oauth.allowInsecureRequests]: true }));
    const c: oauth.Client = { client_id: 'servicea' };
    const response = await oauth.clientCredentialsGrantRequest(as, c, oauth.ClientSecretBasic('servicea-secret'), new URLSearchParams({ resource: 'servicec' }), { [oauth.allowInsecureRequests]: true });
    const result = await oauth.processClientCredentialsResponse(as, c, response);
    const request = new Request('http://servicec.test/api', { headers: { authorization: `Bearer ${result.access_token}` } });
    const claims = await oauth.validateJwtAccessToken(as, request, 'servicec', { [oauth.allowInsecureRequests]: true });
    expect(claims).toMatchObject({ iss: issuer, sub: 'servicea', aud: 'servicec', client_id: 'servicea' });
    await expect(oauth.validateJwtAccessToken(as, request, 'serviceb', { [oauth.allowInsecureRequests]: true })).rejects.toThrow();
  });
});

describe('start-up and the hash-password helper', () => {
  it('refuses a bad OIDC_CONFIG with one sentence naming the file and the field, exit 1', async () => {
    const file = path.join(dir, 'bad.yaml');
    await writeFile(file, testConfigYaml().replace('[http://localhost:3000/spa]', '[spa]'));
    const run = await runScript('jwt-factory/main.ts', [], { env: { PORT: '0', KEYS_DIR: path.join(dir, 'k2'), OIDC_CONFIG: file } });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`jwt-factory: Invalid setting OIDC_CONFIG: ${file}: clients[2].redirect_uris[0]: must be an absolute http(s) URL without a fragment.\n`);
  });

  it('prints a scrypt hash of the password read on stdin, which the config accepts', async () => {
    const run = spawnSync(path.join(ROOT, 'node_modules/.bin/tsx'), [path.join(ROOT, 'jwt-factory/main.ts'), 'hash-password'], { input: 'correct horse\n', encoding: 'utf8', timeout: 30_000 });
    expect(run.status).toBe(0);
    const hash = run.stdout.trim();
    expect(hash).not.toContain('correct horse');
    const config = parseOidcConfig(`clients:\n  - client_id: a\n    client_secret_hash: "${hash}"\n    grant_types: [client_credentials]\n`, 'h.yaml');
    expect(await secretMatches(config.clients.get('a')!.secret!, 'correct horse')).toBe(true);
    expect(await secretMatches(storedSecret(hash, true), 'correct horsE')).toBe(false);
  });
});
