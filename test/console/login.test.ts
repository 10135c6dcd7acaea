import { createServer, type Server } from 'node:http';
import express from 'express';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consoleAssets, consoleRouter } from '../../jwt-factory/routes/console.js';
import { listen } from '../../lib/server.js';
import { startTestProvider, type TestProvider } from '../helpers/oidc-provider.js';
import { freePort } from '../helpers/process.js';
import { CHROMIUM, CHROMIUM_ARGS, requireTool } from '../helpers/tools.js';

/**
 * The Login panel's authorization-code flow against a certified provider (panva's oidc-provider).
 * The console talks to its own origin only (its CSP says connect-src 'self'), as it does on a
 * factory with OIDC_CONFIG; here that origin is a small server that serves the console and passes
 * the provider's discovery, token and userinfo endpoints through, so the browser sees one origin.
 */

let provider: TestProvider;
let server: Server;
let origin: string;
let browser: Browser;

beforeAll(async () => {
  requireTool('chromium', CHROMIUM);
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  provider = await startTestProvider({ clientId: 'console', clientSecret: 'unused', tokenEndpointAuthMethod: 'none', redirectUris: [`${origin}/console/`], postLogoutRedirectUris: [], accessTokenTtl: 300 });
  const app = express();
  app.use('/console', consoleRouter(consoleAssets()));
  app.get('/utils/keys', (_req, res) => void res.json([]));
  app.get('/.well-known/jwks.json', (_req, res) => void res.json({ keys: [] }));
  app.get('/.well-known/openid-configuration', async (_req, res) => {
    const doc = (await (await fetch(`${provider.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    res.json({ ...doc, token_endpoint: `${origin}/provider/token`, userinfo_endpoint: `${origin}/provider/me` });
  });
  app.post('/provider/token', express.text({ type: '*/*' }), async (req, res) => {
    const answer = await fetch(`${provider.issuer}/token`, { method: 'POST', headers: { 'content-type': req.get('content-type')! }, body: req.body as string });
    res.status(answer.status).type(answer.headers.get('content-type') ?? 'application/json').send(await answer.text());
  });
  app.get('/provider/me', async (req, res) => {
    const answer = await fetch(`${provider.issuer}/me`, { headers: { authorization: req.get('authorization') ?? '' } });
    const challenge = answer.headers.get('www-authenticate');
    if (challenge) res.set('WWW-Authenticate', challenge);
    res.status(answer.status).type(answer.headers.get('content-type') ?? 'application/json').send(await answer.text());
  });
  server = createServer(app);
  await listen(server, port, '127.0.0.1');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

afterAll(async () => {
  await browser?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await provider?.close();
});

describe('the Login panel', () => {
  it('runs the authorization code flow with PKCE and shows each step: request, code, token response, decoded tokens, userinfo', async () => {
    const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(`${origin}/console/#login`);
    await page.fill('#login-client', 'console');
    await page.fill('#login-scope', 'openid profile');
    await page.click('#login-start');
    const authorize = await page.getAttribute('#login-continue', 'href');
    expect(new URL(authorize!).searchParams.get('code_challenge_method')).toBe('S256');
    await page.click('#login-continue');
    await page.fill('input[name=login]', 'alice');
    await page.fill('input[name=password]', 'any password');
    await page.click('button[type=submit]');
    await page.locator('#login-status .verdict', { hasText: 'Logged in' }).waitFor({ timeout: 10_000 }).catch(async (err) => {
      throw new Error(`${(err as Error).message}\nurl ${page.url()}\nstatus ${await page.locator('#login-status').innerText()}\nsteps ${await page.locator('#login-steps').innerText()}\n${problems.join('\n')}`);
    });
    expect(new URL(page.url()).search).toBe('');
    const steps = await page.locator('#login-steps > li').allInnerTexts();
    expect(steps.map((s) => s.split(/[\s(]/, 2).join(' '))).toEqual(['1. Authorization', '2. Code', '3. Token', '4. Tokens', '5. Userinfo']);
    expect(steps[3]).toContain('"sub": "alice"');
    expect(steps[3]).toContain('"aud": "webui-api"');
    // This provider binds its access tokens to an API (RFC 9068, resource indicators): its userinfo refuses them, and the panel says so.
    expect(steps[4]).toMatch(/^5\. Userinfo refused by .*: invalid_token/);
    expect(await page.locator('#login-status').innerText()).toContain('Logged in; userinfo refused the access token');
    expect(steps[2]).not.toMatch(/eyJ/);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('names the refusal when the provider says no (an unknown client)', async () => {
    const page = await browser.newPage();
    await page.goto(`${origin}/console/#login`);
    await page.fill('#login-client', 'nobody');
    await page.click('#login-start');
    await page.click('#login-continue');
    // oidc-provider shows its own error page for an unknown client: it never redirects back.
    await page.locator('body', { hasText: 'invalid_client' }).waitFor();
    await page.close();
  });
});
