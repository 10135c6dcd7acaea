import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import type { Express } from 'express';
import { expect } from 'vitest';
import { loadFactoryConfig } from '../../../jwt-factory/config.js';
import { createApp } from '../../../jwt-factory/http.js';
import { createKeyStore } from '../../../jwt-factory/keystore.js';
import { parseOidcConfig } from '../../../jwt-factory/oidc/config.js';
import { createOidcProvider } from '../../../jwt-factory/oidc/provider.js';
import { createFileOidcStore } from '../../../jwt-factory/oidc/store.js';
import { silentLogger } from '../../../lib/logger.js';
import { manualClock } from '../harness.js';
import { cookieJar } from '../../helpers/cookies.js';

export const ISSUER = 'http://factory.test:5555';

/** A config in the issue's shape plus a password client, a private_key_jwt client and two users. */
export function testConfigYaml(extraClients = ''): string {
  return `clients:
  - client_id: webui
    client_name: Web <UI>
    client_secret: webui-secret
    redirect_uris: [http://localhost:3000/callback]
    post_logout_redirect_uris: [http://localhost:3000/]
    grant_types: [authorization_code, refresh_token]
    response_types: [code]
    token_endpoint_auth_method: client_secret_basic
    scope: openid profile email offline_access
    audiences: [serviceb]
  - client_id: servicea
    client_secret: servicea-secret
    grant_types: [client_credentials, urn:ietf:params:oauth:grant-type:token-exchange]
    audiences: [serviceb, servicec]
  - client_id: spa
    redirect_uris: [http://localhost:3000/spa]
    grant_types: [authorization_code]
    token_endpoint_auth_method: none
  - client_id: cli
    client_secret: cli-secret
    grant_types: [password, refresh_token]
    audiences: [serviceb]
  - client_id: poster
    client_secret: "p@ss:w rd&="
    token_endpoint_auth_method: client_secret_post
    grant_types: [client_credentials]
${extraClients}users:
  - username: alice
    password: alice-password
    claims: { name: Alice Liddell, email: alice@example.com, email_verified: true, groups: [admins] }
  - username: bob
    password: bob-password
`;
}

/** A factory app with OIDC over a temp KEYS_DIR and a clock the test moves. */
export async function makeOidcFactory(options: { yaml?: string; env?: Record<string, string>; dir?: string; start?: Date } = {}) {
  const dir = options.dir ?? (await mkdtemp(path.join(tmpdir(), 'oidc-test-')));
  // ES256: a P-256 key is made in a millisecond, an RSA key in up to a second on a busy machine.
  const config = loadFactoryConfig({ KEYS_DIR: dir, ISSUER, PUBLIC_URL: ISSUER, OIDC_CONFIG: 'test.yaml', OIDC_ALG: 'ES256', ...options.env });
  const time = manualClock(options.start ?? new Date('2026-06-01T12:00:00Z'));
  const logger = silentLogger();
  const keystore = createKeyStore({ dir, clock: time.clock, logger, defaultAlg: config.ALGORITHM, retireAfterSeconds: 3600, maxKeys: 100 });
  await keystore.load();
  const store = createFileOidcStore({ dir: path.join(dir, 'oidc'), clock: time.clock });
  const oidc = await createOidcProvider({
    config: parseOidcConfig(options.yaml ?? testConfigYaml(), 'test.yaml'),
    store,
    keystore,
    keyId: config.OIDC_KEY_ID,
    alg: config.OIDC_ALG,
    issuer: ISSUER,
    publicUrl: ISSUER,
    clock: time.clock,
    sessionTtl: config.OIDC_SESSION_TTL,
    lockoutAfter: config.OIDC_LOCKOUT_AFTER,
    clockTolerance: config.CLOCK_TOLERANCE,
    xfccBy: config.TRUST_XFCC ? config.XFCC_BY : undefined,
  });
  const app = createApp({ config, keystore, logger, clock: time.clock, oidc });
  return { app, dir, time, keystore, store, oidc, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

/** A PKCE pair (RFC 7636 §4.1–4.2, S256). */
export function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** The payload of a compact JWT, unverified (the tests check what was signed). */
export const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
export const headerOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()) as Record<string, unknown>;

/** The hidden field `name` of a rendered form. */
export function hiddenField(html: string, name: string): string {
  const match = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  if (!match) throw new Error(`no field ${name} in:\n${html}`);
  return match[1]!.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>');
}

/** Cookie pairs from Set-Cookie headers, merged into a jar string (the suite's one jar). */
export { cookieJar };

/**
 * The browser's part of the code flow over supertest: GET /authorize, the login form, POST
 * /login. Answers the code (and the jar, for SSO), or the last response when no code came.
 */
export async function loginForCode(app: Express, query: Record<string, string>, credentials = { username: 'alice', password: 'alice-password' }, jar = '') {
  const first = await request(app).get('/authorize').query(query).set('Cookie', jar);
  jar = cookieJar(jar, first.headers['set-cookie']);
  let final = first;
  if (first.status === 200) {
    final = await request(app)
      .post('/login')
      .type('form')
      .set('Cookie', jar)
      .send({ csrf: hiddenField(first.text, 'csrf'), request: hiddenField(first.text, 'request'), ...credentials });
    jar = cookieJar(jar, final.headers['set-cookie']);
  }
  const location = final.headers.location as string | undefined;
  const code = location ? new URL(location).searchParams.get('code') ?? undefined : undefined;
  return { code, location, response: final, first, jar };
}

/** The webui's authorization query with PKCE. */
export function webuiQuery(challenge: string, extra: Record<string, string> = {}) {
  return { client_id: 'webui', redirect_uri: 'http://localhost:3000/callback', response_type: 'code', scope: 'openid profile email', state: 'st-1', nonce: 'n-1', code_challenge: challenge, code_challenge_method: 'S256', ...extra };
}

/** Every OAuth error answer: the status, JSON, the RFC 6749 §5.2 body, never cached. */
export function expectOAuthError(res: request.Response, status: number, error: string) {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.body.error).toBe(error);
  expect(typeof res.body.error_description).toBe('string');
  expect(res.headers['cache-control']).toBe('no-store');
}
