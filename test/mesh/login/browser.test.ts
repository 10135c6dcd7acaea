import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpClient } from '../../../lib/httpclient.js';
import { silentLogger } from '../../../lib/logger.js';
import { createGateway, type GatewayRules } from '../../../mesh/gateway.js';
import { createLogin } from '../../../mesh/login/handler.js';
import { createOidcClient } from '../../../mesh/login/oidc.js';
import { createMemorySessionStore, type SessionRecord } from '../../../mesh/login/store.js';
import { loadPolicyObjects } from '../../../mesh/istio/policies.js';
import { createWebui } from '../../../webui/app.js';
import { startTestProvider, type TestProvider } from '../../helpers/oidc-provider.js';
import { freePort, ROOT } from '../../helpers/process.js';
import { CHROMIUM, CHROMIUM_ARGS, requireTool } from '../../helpers/tools.js';
import { send, serverPool } from './send.js';

/**
 * The login at the gateway in a real browser: Debian's chromium logs alice in at a real
 * OpenID Provider (panva's oidc-provider) through the gateway in front of the webui, whose API
 * routes call two backends that verify her access token. The provider is on `localhost`, the
 * gateway on `127.0.0.1`: two sites, as in production, so SameSite is exercised for real.
 * A second gateway on the same session store fronts an echo server, to see exactly what an
 * upstream receives. The gateways' clock is injected (`offset`): refresh is tested by moving
 * it, never by waiting.
 */

const CLIENT_ID = 'webui-gateway';
const CLIENT_SECRET = 'a-test-client-secret-of-reasonable-length';
/** Access tokens live 5 minutes; the gateway refreshes 30 s ahead. */
const TTL_S = 300;
const JWT_LIKE = /eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+/;

let provider: TestProvider;
let browser: Browser;
let offset = 0;
const now = () => Date.now() + offset;
const store = createMemorySessionStore({ now, maxEntries: 1000 });
const pool = serverPool();
const serve = pool.serve;
let gatewayUrl: string;
let echoUrl: string;
/** What the backends and the echo upstream received. */
const seen: { backend: Array<{ service: string; token: string }>; echo: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }> } = { backend: [], echo: [] };


/** A backend like serviceb's /hello behind its sidecar: 200 only with a valid access token of the provider. */
function backend(service: string): http.Server {
  return http.createServer(async (req, res) => {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    try {
      const { payload } = await jwtVerify(token, createLocalJWKSet(provider.jwks as never), { issuer: provider.issuer, audience: provider.audience, currentDate: new Date(now()) });
      seen.backend.push({ service, token });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ service, message: `Hello from ${service}`, user: payload.sub }));
    } catch (err) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'token_invalid', message: (err as Error).message } }));
    }
  });
}

/** The mesh rules at the gateway: the user's token is checked, /api/ needs a request principal of the provider. */
function rules(issuer: string, jwks: unknown): GatewayRules {
  return {
    jwks: {},
    policies: loadPolicyObjects(
      [
        { apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'users', namespace: 'default' }, spec: { jwtRules: [{ issuer, jwks: JSON.stringify(jwks), forwardOriginalToken: true }] } },
        {
          apiVersion: 'security.istio.io/v1',
          kind: 'AuthorizationPolicy',
          metadata: { name: 'users-on-api', namespace: 'default' },
          spec: { rules: [{ to: [{ operation: { notPaths: ['/api/*'] } }] }, { from: [{ source: { requestPrincipals: [`${issuer}/*`] } }], to: [{ operation: { paths: ['/api/*'] } }] }] },
        },
      ],
      'login-test',
    ),
  };
}

function gateway(publicUrl: string, upstream: string, issuer: string): http.Server {
  const login = createLogin({
    options: {
      publicUrl: new URL(publicUrl),
      cookieName: 'mesh-session',
      sessionLifetimeMs: 8 * 3600_000,
      sessionIdleMs: 1800_000,
      callbackPath: '/callback',
      logoutPath: '/logout',
      apiPrefixes: ['/api/'],
      idTokenHeader: 'x-id-token',
      accessTokenHeader: 'x-access-token',
      claimHeaders: [
        { claim: 'name', header: 'x-user-name' },
        { claim: 'email', header: 'x-user-email' },
      ],
      refreshAheadMs: 30_000,
    },
    oidc: createOidcClient({ issuer: new URL(issuer), clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUri: `${publicUrl}/callback`, scope: 'openid profile email offline_access api', clientAuth: 'client_secret_basic', timeoutSeconds: 5 }),
    store,
    now,
    logger: silentLogger(),
  });
  const r = rules(issuer, provider.jwks);
  return createGateway({ rules: () => r, upstream: new URL(upstream), now: () => new Date(now()), logger: silentLogger(), login });
}

/** The session record behind a browser's cookie (the store is keyed by the cookie's SHA-256). */
async function sessionOf(context: BrowserContext): Promise<{ cookie: string; record: SessionRecord }> {
  const cookie = (await context.cookies(gatewayUrl)).find((c) => c.name === 'mesh-session');
  expect(cookie, 'the session cookie').toBeDefined();
  const record = await store.get(createHash('sha256').update(cookie!.value).digest('base64url'));
  expect(record?.kind).toBe('session');
  return { cookie: cookie!.value, record: record as SessionRecord };
}

/** Logs in on the provider's development form; resolves on the webui showing the user. */
async function logIn(page: Page, user = 'alice'): Promise<void> {
  await page.goto(`${gatewayUrl}/`);
  await expect.poll(() => new URL(page.url()).host).toBe(new URL(provider.issuer).host);
  await page.fill('input[name=login]', user);
  await page.fill('input[name=password]', 'any password');
  await page.click('button[type=submit]');
  await page.waitForURL(`${gatewayUrl}/`);
  await page.waitForSelector(`#who[data-sub="${user}"]`);
}

/** Every response body a page receives, to prove no token is among them. */
function recordBodies(page: Page): string[] {
  const bodies: string[] = [];
  page.on('response', (res) => {
    res.text().then((t) => bodies.push(t), () => undefined);
  });
  return bodies;
}

beforeAll(async () => {
  const chromiumPath = requireTool('chromium', CHROMIUM);
  const gatewayPort = await freePort();
  const echoPort = await freePort();
  gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  echoUrl = `http://127.0.0.1:${echoPort}`;
  provider = await startTestProvider({
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    redirectUris: [`${gatewayUrl}/callback`, `${echoUrl}/callback`],
    postLogoutRedirectUris: [`${gatewayUrl}/`, `${echoUrl}/`],
    accessTokenTtl: TTL_S,
  });
  const b = await serve(backend('serviceb'));
  const c = await serve(backend('servicec'));
  const client = createHttpClient({ timeoutMs: 5000 });
  const webui = await serve(http.createServer(createWebui({ backends: { serviceb: `http://127.0.0.1:${b}`, servicec: `http://127.0.0.1:${c}` }, client, logger: silentLogger() })));
  const echo = await serve(
    http.createServer((req, res) => {
      req.resume();
      seen.echo.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ path: req.url }));
    }),
  );
  await serve(gateway(gatewayUrl, `http://127.0.0.1:${webui}`, provider.issuer), gatewayPort);
  await serve(gateway(echoUrl, `http://127.0.0.1:${echo}`, provider.issuer), echoPort);
  browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await pool.closeAll();
  await provider?.close();
});

describe('the login at the gateway, in a browser', () => {
  let context: BrowserContext;
  let page: Page;
  let bodies: string[];

  beforeAll(async () => {
    context = await browser.newContext();
    page = await context.newPage();
    bodies = recordBodies(page);
  });
  afterAll(async () => {
    await context?.close();
  });

  it('a page without a session is sent to the provider with code, PKCE S256, state and nonce', async () => {
    const res = await send(`${gatewayUrl}/`, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(302);
    const location = new URL(res.headers.location!);
    expect(location.origin).toBe(provider.issuer);
    expect(Object.fromEntries(location.searchParams)).toMatchObject({ response_type: 'code', client_id: CLIENT_ID, code_challenge_method: 'S256', redirect_uri: `${gatewayUrl}/callback` });
    for (const p of ['code_challenge', 'state', 'nonce']) expect(location.searchParams.get(p)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(res.headers['set-cookie']?.[0]).toMatch(/^mesh-session-login=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=600; HttpOnly; SameSite=Lax$/);
  });

  it('an API call without a session answers 401 JSON login_required, never a redirect', async () => {
    for (const headers of [{ accept: 'application/json' }, { 'x-requested-with': 'fetch' }, {}] as Record<string, string>[]) {
      const res = await send(`${gatewayUrl}/api/serviceb`, { headers });
      expect(res.status).toBe(401);
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(res.headers.location).toBeUndefined();
      expect(JSON.parse(res.body).error.code).toBe('login_required');
    }
  });

  it('alice logs in at the provider and the webui shows her and both backends\' answers', async () => {
    await logIn(page);
    expect(await page.textContent('#who')).toBe('Logged in as Alice Liddell (alice)');
    await page.waitForSelector('#serviceb-status.ok');
    await page.waitForSelector('#servicec-status.ok');
    expect(JSON.parse((await page.textContent('#serviceb'))!)).toEqual({ service: 'serviceb', message: 'Hello from serviceb', user: 'alice' });
    expect(JSON.parse((await page.textContent('#servicec'))!)).toEqual({ service: 'servicec', message: 'Hello from servicec', user: 'alice' });
    const { record } = await sessionOf(context);
    expect(seen.backend.filter((s) => s.token === record.tokens.accessToken).map((s) => s.service).sort()).toEqual(['serviceb', 'servicec']);
    if (process.env.WEBUI_SCREENSHOTS) {
      await mkdir(path.join(ROOT, process.env.WEBUI_SCREENSHOTS), { recursive: true });
      await page.screenshot({ path: path.join(ROOT, process.env.WEBUI_SCREENSHOTS, 'webui-logged-in.png') });
    }
  });

  it('the browser holds only an opaque HttpOnly SameSite=Strict cookie of 43 characters', async () => {
    const cookies = await context.cookies(gatewayUrl);
    expect(cookies.map((c) => c.name)).toEqual(['mesh-session']);
    const [cookie] = cookies;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', secure: false, path: '/' });
    expect(cookie!.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(cookie!.value).not.toMatch(JWT_LIKE);
  });

  it('the page\'s JavaScript sees no token: not in document.cookie, the storages, or any response body', async () => {
    const { record } = await sessionOf(context);
    const visible = await page.evaluate(() => ({ cookie: document.cookie, local: localStorage.length, session: sessionStorage.length }));
    expect(visible).toEqual({ cookie: '', local: 0, session: 0 });
    expect(bodies.length).toBeGreaterThan(3);
    for (const body of bodies) {
      expect(body).not.toMatch(JWT_LIKE);
      expect(body).not.toContain(record.tokens.refreshToken ?? 'no refresh token');
    }
  });

  it('a second tab shares the session without logging in again', async () => {
    const tab = await context.newPage();
    await tab.goto(`${gatewayUrl}/`);
    await tab.waitForSelector('#who[data-sub="alice"]');
    expect(new URL(tab.url()).origin).toBe(gatewayUrl);
    await tab.close();
  });

  it('the upstream gets the access token, the id token and the claims, never what the client sent in their place', async () => {
    const { cookie, record } = await sessionOf(context);
    const before = seen.echo.length;
    const res = await send(`${echoUrl}/api/data`, {
      headers: {
        accept: 'application/json',
        cookie: `theme=dark; mesh-session=${cookie}`,
        authorization: 'Bearer forged',
        'x-id-token': 'forged',
        'x-access-token': 'forged',
        'x-user-name': 'Mallory',
        'x-user-email': 'mallory@example.com',
      },
    });
    expect(res.status).toBe(200);
    const got = seen.echo.slice(before);
    expect(got).toHaveLength(1);
    const headers = got[0]!.headers;
    expect(headers.authorization).toBe(`Bearer ${record.tokens.accessToken}`);
    expect(headers['x-access-token']).toBe(record.tokens.accessToken);
    expect(headers['x-id-token']).toBe(record.tokens.idToken);
    expect(headers['x-user-name']).toBe('Alice Liddell');
    expect(headers['x-user-email']).toBe('alice@example.com');
    // The session cookie stays at the gateway; the application's own cookies pass.
    expect(headers.cookie).toBe('theme=dark');
    expect(decodeJwt(record.tokens.idToken)).toMatchObject({ sub: 'alice', aud: CLIENT_ID, iss: provider.issuer });
  });

  it('a tampered, foreign or malformed cookie answers 401 and leaks nothing', async () => {
    const { cookie } = await sessionOf(context);
    const tampered = `${cookie.slice(0, -1)}${cookie.endsWith('A') ? 'B' : 'A'}`;
    for (const value of [tampered, 'x'.repeat(43), 'not-a-session', `${cookie}x`]) {
      const before = seen.echo.length;
      const res = await send(`${echoUrl}/api/data`, { headers: { accept: 'application/json', cookie: `mesh-session=${value}` } });
      expect(res.status).toBe(401);
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(JSON.parse(res.body).error.code).toBe('login_required');
      expect(res.body).not.toMatch(JWT_LIKE);
      expect(res.headers['set-cookie']).toEqual(['mesh-session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict']);
      expect(seen.echo.length).toBe(before);
    }
  });

  it('a state-changing request from another origin is refused 403 csrf_refused and never reaches the upstream', async () => {
    const before = seen.echo.length;
    // Same site (127.0.0.1), another port: the SameSite cookie IS sent, the Origin check refuses.
    const evilPort = await serve(
      http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end(`<form id=f method=post action="${echoUrl}/api/transfer"><input name=amount value=1000></form><script>document.getElementById('f').submit()</script>`);
      }),
    );
    const evil = await context.newPage();
    const answer = evil.waitForResponse((r) => r.url() === `${echoUrl}/api/transfer`);
    await evil.goto(`http://127.0.0.1:${evilPort}/`);
    const res = await answer;
    expect(res.status()).toBe(403);
    expect(res.headers()['content-type']).toBe('application/json; charset=utf-8');
    expect((await res.json()).error.code).toBe('csrf_refused');
    // Another site (localhost): the SameSite=Strict cookie is not even sent.
    const answer2 = evil.waitForResponse((r) => r.url() === `${echoUrl}/api/transfer`);
    await evil.goto(`http://localhost:${evilPort}/`);
    expect((await answer2).status()).toBe(401);
    await evil.close();
    expect(seen.echo.slice(before).filter((r) => r.method === 'POST')).toEqual([]);
    // The same request from the gateway's own origin goes through.
    const ok = await page.evaluate(async (url) => (await fetch(url, { method: 'POST', headers: { accept: 'application/json' } })).status, `${gatewayUrl}/api/serviceb`);
    expect(ok).toBe(404);
  });

  it('across the access token\'s expiry the gateway refreshes once and never passes an expired token', async () => {
    const { record: first } = await sessionOf(context);
    // 20 s before expiry: inside the 30 s refresh window.
    offset = first.tokens.accessExpiresAt - Date.now() - 20_000;
    const results = await page.evaluate(async () => {
      const calls = Array.from({ length: 5 }, () => fetch('/api/serviceb', { headers: { accept: 'application/json' } }).then((r) => r.status));
      return Promise.all(calls);
    });
    expect(results).toEqual([200, 200, 200, 200, 200]);
    const { record: next } = await sessionOf(context);
    expect(next.tokens.accessToken).not.toBe(first.tokens.accessToken);
    expect(next.tokens.accessExpiresAt).toBeGreaterThan(now() + 60_000);
    // Single flight: the five concurrent calls all carried the one new token.
    const lastFive = seen.backend.slice(-5).map((s) => s.token);
    expect(new Set(lastFive)).toEqual(new Set([next.tokens.accessToken]));
    for (const token of lastFive) expect(decodeJwt(token).exp! * 1000).toBeGreaterThan(now());
  });

  it('a refresh the provider refuses ends the session: 401 session_expired, no expired token upstream', async () => {
    const other = await browser.newContext();
    const tab = await other.newPage();
    await logIn(tab, 'bob');
    const { record } = await sessionOf(other);
    // Revoke bob's refresh token at the provider (RFC 7009), then pass his access token's expiry.
    const discovery = (await (await fetch(`${provider.issuer}/.well-known/openid-configuration`)).json()) as { revocation_endpoint: string };
    const revoked = await fetch(discovery.revocation_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}` },
      body: new URLSearchParams({ token: record.tokens.refreshToken!, token_type_hint: 'refresh_token' }),
    });
    expect(revoked.status).toBe(200);
    offset = record.tokens.accessExpiresAt - Date.now() + 1000;
    const before = seen.backend.length;
    const status = await tab.evaluate(async () => {
      const r = await fetch('/api/serviceb', { headers: { accept: 'application/json' } });
      return { status: r.status, type: r.headers.get('content-type'), body: await r.json() };
    });
    expect(status).toMatchObject({ status: 401, type: 'application/json; charset=utf-8', body: { error: { code: 'session_expired' } } });
    expect(seen.backend.length).toBe(before);
    expect(await other.cookies(gatewayUrl)).toEqual([]);
    await other.close();
  });

  it('logout ends the gateway session and the provider\'s: the old cookie is refused and the next visit asks for a password', async () => {
    offset = 0;
    const { cookie } = await sessionOf(context);
    await page.goto(`${gatewayUrl}/`);
    await page.waitForSelector('#who[data-sub="alice"]');
    await page.click('#logout button');
    // The provider asks to confirm the RP-initiated logout, then returns to the webui, which sends to the login.
    await page.waitForURL((u) => u.origin === provider.issuer);
    await page.click('button[name=logout]');
    await page.waitForSelector('input[name=login]');
    expect(new URL(page.url()).origin).toBe(provider.issuer);
    const replay = await send(`${gatewayUrl}/api/serviceb`, { headers: { accept: 'application/json', cookie: `mesh-session=${cookie}` } });
    expect(replay.status).toBe(401);
    expect(JSON.parse(replay.body).error.code).toBe('login_required');
    expect((await context.cookies(gatewayUrl)).map((c) => c.name)).not.toContain('mesh-session');
  });
});
