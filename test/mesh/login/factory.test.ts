import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createHttpClient } from '../../../lib/httpclient.js';
import { silentLogger } from '../../../lib/logger.js';
import { createGateway } from '../../../mesh/gateway.js';
import { createLogin } from '../../../mesh/login/handler.js';
import { createOidcClient } from '../../../mesh/login/oidc.js';
import { createMemorySessionStore, type SessionRecord } from '../../../mesh/login/store.js';
import { createWebui } from '../../../webui/app.js';
import { freePort, startProcess, type Started } from '../../helpers/process.js';
import { CHROMIUM, CHROMIUM_ARGS, requireTool } from '../../helpers/tools.js';
import { send, serverPool } from './send.js';

/**
 * The login at the gateway with the suite's own issuer: a real factory process (OIDC_CONFIG
 * written here, access tokens of 6 s), the gateway in front of the webui, Debian's chromium. No
 * clock is moved: the tokens really expire, and the backends verify them at the real time
 * against the factory's JWKS. The same behaviour against a certified provider is in
 * browser.test.ts.
 */

const SECRET = 'factory-test-webui-secret';
/** The factory's access-token lifetime for this client, and how far ahead of expiry the gateway refreshes. */
const ACCESS_TTL_S = 6;
const REFRESH_AHEAD_MS = 2000;
const JWT_LIKE = /eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+/;

let dir: string;
let factory: Started;
let browser: Browser;
let issuer: string;
let jwks: ReturnType<typeof createRemoteJWKSet>;
let gatewayUrl: string;
const pool = serverPool();
const store = createMemorySessionStore({ now: Date.now, maxEntries: 100 });
/** Every token the backends received, and whether it verified when it arrived. */
const seen: Array<{ service: string; token: string; valid: boolean }> = [];

/** The session record behind a browser's cookie (the store is keyed by the cookie's SHA-256). */
async function sessionOf(context: BrowserContext): Promise<{ cookie: string; record: SessionRecord }> {
  const cookie = (await context.cookies(gatewayUrl)).find((c) => c.name === 'mesh-session');
  expect(cookie, 'the session cookie').toBeDefined();
  const record = await store.get(createHash('sha256').update(cookie!.value).digest('base64url'));
  expect(record?.kind).toBe('session');
  return { cookie: cookie!.value, record: record as SessionRecord };
}

/** One API call from the page's own script, as the webui makes it. */
const callFromPage = (page: Page, name: string) =>
  page.evaluate(async (n) => {
    const r = await fetch(`/api/${n}`, { headers: { accept: 'application/json' } });
    return { status: r.status, type: r.headers.get('content-type'), body: await r.json() };
  }, name);

/** Resolves once the JWT's `exp` is in the past by the real clock (no assertion on time). */
async function pastExpiry(token: string): Promise<void> {
  const exp = decodeJwt(token).exp! * 1000;
  while (Date.now() <= exp + 250) await new Promise((r) => setTimeout(r, Math.max(50, exp + 300 - Date.now())));
}

describe('the login at the gateway with the factory as the issuer', () => {
  let context: BrowserContext;
  let page: Page;
  const bodies: string[] = [];

  beforeAll(async () => {
    const chromiumPath = requireTool('chromium', CHROMIUM);
    dir = await mkdtemp(path.join(tmpdir(), 'login-factory-'));
    const factoryPort = await freePort();
    const gatewayPort = await freePort();
    issuer = `http://localhost:${factoryPort}`;
    gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
    await writeFile(
      path.join(dir, 'oidc.yaml'),
      stringify({
        clients: [
          {
            client_id: 'webui',
            client_secret: SECRET,
            redirect_uris: [`${gatewayUrl}/callback`],
            post_logout_redirect_uris: [`${gatewayUrl}/`],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: 'client_secret_basic',
            scope: 'openid profile email offline_access',
            audiences: ['serviceb'],
            access_token_lifetime: ACCESS_TTL_S,
          },
        ],
        users: [{ username: 'alice', password: 'alice-password', claims: { name: 'Alice Liddell', email: 'alice@example.com' } }],
      }),
    );
    factory = await startProcess('jwt-factory/main.ts', {
      env: { PORT: String(factoryPort), HOST: '127.0.0.1', KEYS_DIR: path.join(dir, 'keys'), OIDC_CONFIG: path.join(dir, 'oidc.yaml'), OIDC_ALG: 'ES256', ISSUER: issuer, PUBLIC_URL: issuer },
      timeoutMs: 60_000,
    });
    const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as { jwks_uri: string };
    jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
    // A backend like serviceb's /hello behind its sidecar: 200 only with a token of the factory valid now.
    const backend = (service: string) =>
      http.createServer(async (req, res) => {
        const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
        try {
          const { payload } = await jwtVerify(token, jwks, { issuer, audience: 'serviceb' });
          seen.push({ service, token, valid: true });
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ service, user: payload.sub }));
        } catch (err) {
          seen.push({ service, token, valid: false });
          res.writeHead(401, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: 'token_invalid', message: (err as Error).message } }));
        }
      });
    const b = await pool.serve(backend('serviceb'));
    const c = await pool.serve(backend('servicec'));
    const webui = await pool.serve(
      http.createServer(createWebui({ backends: { serviceb: `http://127.0.0.1:${b}`, servicec: `http://127.0.0.1:${c}` }, client: createHttpClient({ timeoutMs: 5000 }), logger: silentLogger() })),
    );
    const login = createLogin({
      options: {
        publicUrl: new URL(gatewayUrl),
        cookieName: 'mesh-session',
        sessionLifetimeMs: 3600_000,
        sessionIdleMs: 1800_000,
        callbackPath: '/callback',
        logoutPath: '/logout',
        apiPrefixes: ['/api/'],
        claimHeaders: [{ claim: 'name', header: 'x-user-name' }],
        refreshAheadMs: REFRESH_AHEAD_MS,
      },
      oidc: createOidcClient({ issuer: new URL(issuer), clientId: 'webui', clientSecret: SECRET, redirectUri: `${gatewayUrl}/callback`, scope: 'openid profile email offline_access', clientAuth: 'client_secret_basic', timeoutSeconds: 5 }),
      store,
      now: Date.now,
      logger: silentLogger(),
    });
    await pool.serve(createGateway({ rules: () => ({ policies: [], jwks: {} }), upstream: new URL(`http://127.0.0.1:${webui}`), logger: silentLogger(), login }), gatewayPort);
    browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
    context = await browser.newContext();
    page = await context.newPage();
    page.on('response', (r) => void r.text().then((t) => bodies.push(t), () => undefined));
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await pool.closeAll();
    await factory?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("alice logs in on the factory's page, the webui shows her and both backends accept her token; the page sees none", async () => {
    await page.goto(`${gatewayUrl}/`);
    expect(new URL(page.url()).origin).toBe(issuer);
    await page.fill('input[name=username]', 'alice');
    await page.fill('input[name=password]', 'alice-password');
    await page.click('button[type=submit]');
    await page.waitForSelector('#who[data-sub="alice"]');
    expect(await page.textContent('#who')).toBe('Logged in as Alice Liddell (alice)');
    await page.waitForSelector('#serviceb-status.ok');
    await page.waitForSelector('#servicec-status.ok');
    expect(JSON.parse((await page.textContent('#serviceb'))!)).toEqual({ service: 'serviceb', user: 'alice' });
    expect(JSON.parse((await page.textContent('#servicec'))!)).toEqual({ service: 'servicec', user: 'alice' });
    const cookies = await context.cookies(gatewayUrl);
    expect(cookies.map((c) => c.name)).toEqual(['mesh-session']);
    expect(cookies[0]).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    expect(cookies[0]!.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const { record } = await sessionOf(context);
    expect(decodeJwt(record.tokens.accessToken)).toMatchObject({ iss: issuer, sub: 'alice', aud: 'serviceb' });
    expect(record.tokens.refreshToken).toBeDefined();
    expect(await page.evaluate(() => ({ cookie: document.cookie, local: localStorage.length, session: sessionStorage.length }))).toEqual({ cookie: '', local: 0, session: 0 });
    expect(bodies.length).toBeGreaterThan(3);
    for (const body of bodies) {
      expect(body).not.toMatch(JWT_LIKE);
      expect(body).not.toContain(record.tokens.refreshToken!);
    }
  });

  it("across the access token's real expiry the gateway refreshes at the factory and never passes an expired token", async () => {
    const { record: first } = await sessionOf(context);
    await pastExpiry(first.tokens.accessToken);
    // The token the session held has really expired: a backend refuses it now.
    await expect(jwtVerify(first.tokens.accessToken, jwks, { issuer, audience: 'serviceb' })).rejects.toMatchObject({ code: 'ERR_JWT_EXPIRED' });
    const before = seen.length;
    const answers = await Promise.all([callFromPage(page, 'serviceb'), callFromPage(page, 'servicec'), callFromPage(page, 'serviceb')]);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    const { record: next } = await sessionOf(context);
    expect(next.tokens.accessToken).not.toBe(first.tokens.accessToken);
    // The factory rotates the refresh token (RFC 9700 §4.14.2); the session keeps the new one.
    expect(next.tokens.refreshToken).not.toBe(first.tokens.refreshToken);
    const arrived = seen.slice(before);
    expect(arrived).toHaveLength(3);
    // Single flight: the three concurrent calls carried the one new token, valid when it arrived.
    expect(new Set(arrived.map((s) => s.token))).toEqual(new Set([next.tokens.accessToken]));
    expect(arrived.every((s) => s.valid)).toBe(true);
    expect(seen.every((s) => s.valid)).toBe(true);
  });

  it('a refresh token the factory revoked ends the session at the next expiry: 401 session_expired, nothing upstream', async () => {
    const { record } = await sessionOf(context);
    const revoked = await fetch(`${issuer}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`webui:${SECRET}`).toString('base64')}` },
      body: new URLSearchParams({ token: record.tokens.refreshToken!, token_type_hint: 'refresh_token' }),
    });
    expect(revoked.status).toBe(200);
    await pastExpiry(record.tokens.accessToken);
    const before = seen.length;
    const answer = await callFromPage(page, 'serviceb');
    expect(answer).toMatchObject({ status: 401, type: 'application/json; charset=utf-8', body: { error: { code: 'session_expired' } } });
    expect(seen.length).toBe(before);
    expect((await context.cookies(gatewayUrl)).map((c) => c.name)).not.toContain('mesh-session');
  });

  it("logout ends the factory's session too: before it the factory logs alice in again without a password, after it asks for one", async () => {
    // The gateway session is gone; the factory's is not: a visit comes back logged in (single sign-on).
    await page.goto(`${gatewayUrl}/`);
    await page.waitForSelector('#who[data-sub="alice"]');
    expect(new URL(page.url()).origin).toBe(gatewayUrl);
    const { cookie } = await sessionOf(context);

    await page.click('#logout button');
    // The factory ends its session and returns to the webui, whose gateway sends to the login again.
    await page.waitForSelector('input[name=username]');
    expect(new URL(page.url()).origin).toBe(issuer);
    expect(new URL(page.url()).pathname).toBe('/authorize');
    const replay = await send(`${gatewayUrl}/api/serviceb`, { headers: { accept: 'application/json', cookie: `mesh-session=${cookie}` } });
    expect(replay.status).toBe(401);
    expect(JSON.parse(replay.body).error.code).toBe('login_required');
    // A fresh visit asks again: the factory's session cookie no longer logs anyone in.
    await page.goto(`${gatewayUrl}/`);
    await page.waitForSelector('input[name=username]');
    expect(new URL(page.url()).origin).toBe(issuer);
  });
});
