import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startProcess, type Started } from '../../helpers/process.js';
import { CHROMIUM, CHROMIUM_ARGS, requireTool } from '../../helpers/tools.js';
import { basic, pkce, testConfigYaml, webuiQuery } from './harness.js';

/** The login page in Debian's chromium: one browser for the file, a real factory process. */

let factory: Started;
let browser: Browser;
let dir: string;
let issuer: string;
/** The client application: a real server on a free port that records what reaches it. */
let app: Server;
let appBase: string;
const arrivals: Array<{ url: URL; method: string; body: string }> = [];

beforeAll(async () => {
  requireTool('chromium', existsSync(CHROMIUM) ? CHROMIUM : undefined);
  dir = await mkdtemp(path.join(tmpdir(), 'oidc-browser-'));
  const appPort = await freePort();
  appBase = `http://127.0.0.1:${appPort}`;
  app = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      // Chromium asks every new origin for its icon: not a visit of the flow.
      if (req.url !== '/favicon.ico') arrivals.push({ url: new URL(req.url!, appBase), method: req.method!, body });
      res.writeHead(200, { 'content-type': 'text/html' }).end('<p>client app</p>');
    });
  });
  await new Promise<void>((resolve) => app.listen(appPort, '127.0.0.1', resolve));
  await writeFile(path.join(dir, 'oidc.yaml'), testConfigYaml().replaceAll('http://localhost:3000', appBase));
  const port = await freePort();
  issuer = `http://127.0.0.1:${port}`;
  [factory, browser] = await Promise.all([
    startProcess('jwt-factory/main.ts', {
      env: { PORT: String(port), HOST: '127.0.0.1', KEYS_DIR: path.join(dir, 'keys'), ISSUER: issuer, PUBLIC_URL: issuer, OIDC_CONFIG: path.join(dir, 'oidc.yaml'), OIDC_ALG: 'ES256' },
    }),
    chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
  ]);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => app?.close(resolve));
  await factory?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A fresh browser profile that records the page's CSP violations. */
async function userAgent(options: { javaScriptEnabled?: boolean } = {}): Promise<{ context: BrowserContext; page: Page; cspViolations: string[] }> {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  const cspViolations: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  return { context, page, cspViolations };
}

const authorizeUrl = (query: Record<string, string>) => `${issuer}/authorize?${new URLSearchParams(query)}`;
/** webui's authorization query, its redirect_uri on the test's client app. */
const webui = (challenge: string, extra: Record<string, string> = {}) => webuiQuery(challenge, { redirect_uri: `${appBase}/callback`, ...extra });

describe('the login page in chromium', () => {
  it('refuses a wrong password, logs alice in, signs her into a second client without a form, logs her out', async () => {
    const { context, page, cspViolations } = await userAgent();
    const webuiPkce = pkce();
    await page.goto(authorizeUrl(webui(webuiPkce.challenge)));
    await expect(page.locator('h1').textContent()).resolves.toBe('Log in to Web <UI>');
    await page.fill('input[name=username]', 'alice');
    await page.fill('input[name=password]', 'wrong');
    const refused = page.waitForResponse((r) => r.url() === `${issuer}/login`);
    await page.click('button[type=submit]');
    expect((await refused).status()).toBe(401);
    await expect(page.locator('[role=alert]').textContent()).resolves.toBe('Wrong username or password.');

    await page.fill('input[name=password]', 'alice-password');
    await Promise.all([page.waitForURL(`${appBase}/callback**`), page.click('button[type=submit]')]);
    const callback = arrivals.at(-1)!.url;
    expect(callback.searchParams.get('state')).toBe('st-1');
    const code = callback.searchParams.get('code')!;
    const cookies = await context.cookies(issuer);
    expect(cookies.find((c) => c.name === 'jwtf_session')).toMatchObject({ httpOnly: true, sameSite: 'Lax' });

    // SSO: the second client gets a code at once, no form.
    const spa = pkce();
    await page.goto(authorizeUrl({ client_id: 'spa', redirect_uri: `${appBase}/spa`, response_type: 'code', scope: 'openid', code_challenge: spa.challenge, code_challenge_method: 'S256' }));
    expect(page.url()).toMatch(new RegExp(`^${appBase}/spa\\?code=`));

    // form_post: the page posts itself by script, which the CSP nonce allows.
    await page.goto(authorizeUrl(webui(pkce().challenge, { response_mode: 'form_post' })));
    await page.waitForURL(`${appBase}/callback`);
    expect(arrivals.at(-1)!.method).toBe('POST');
    expect(new URLSearchParams(arrivals.at(-1)!.body).get('code')).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const tokens = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { authorization: basic('webui', 'webui-secret'), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: `${appBase}/callback`, code_verifier: webuiPkce.verifier }),
    }).then((r) => r.json() as Promise<{ id_token: string }>);
    await page.goto(`${issuer}/logout?${new URLSearchParams({ id_token_hint: tokens.id_token, post_logout_redirect_uri: `${appBase}/`, state: 'bye' })}`);
    expect(page.url()).toBe(`${appBase}/?state=bye`);
    await page.goto(authorizeUrl(webui(pkce().challenge)));
    await expect(page.locator('input[name=password]').count()).resolves.toBe(1);
    expect(cspViolations).toEqual([]);
    await context.close();
  });

  it('works without JavaScript: the login form and the form_post button', async () => {
    const { context, page } = await userAgent({ javaScriptEnabled: false });
    const before = arrivals.length;
    await page.goto(authorizeUrl(webui(pkce().challenge, { response_mode: 'form_post' })));
    await page.fill('input[name=username]', 'bob');
    await page.fill('input[name=password]', 'bob-password');
    await page.click('button[type=submit]');
    await expect(page.locator('button[type=submit]').textContent()).resolves.toBe('Continue');
    await Promise.all([page.waitForURL(`${appBase}/callback`), page.click('button[type=submit]')]);
    expect(arrivals.slice(before).map((a) => a.method)).toEqual(['POST']);
    await context.close();
  });
});
