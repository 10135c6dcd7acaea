import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOidcFactory, type OidcFactory } from '../helpers/oidc-factory.js';
import { CHROMIUM, CHROMIUM_ARGS, requireTool } from '../helpers/tools.js';
import { screenshot } from './shots.js';

/**
 * The console on a real factory process with OIDC_CONFIG and ISSUE_AUTH=client. The Login panel as
 * a first-time user meets it:
 * the factory's default ISSUER and PUBLIC_URL, the panel's default client (`console`) and redirect
 * (`<origin>/console/`). The browser opens the console at localhost while PUBLIC_URL names
 * 127.0.0.1, so the panel must reach the token and userinfo endpoints on its own origin. The
 * Mint panel meeting the factory's demand for client credentials.
 */

let factory: OidcFactory;
let browser: Browser;
let origin: string;
let publicUrl: string;

beforeAll(async () => {
  requireTool('chromium', CHROMIUM);
  [factory, browser] = await Promise.all([
    // The demo's console client, registered for this port.
    startOidcFactory(
      (port) => `clients:
  - client_id: console
    redirect_uris: [http://localhost:${port}/console/, http://127.0.0.1:${port}/console/]
    grant_types: [authorization_code]
    token_endpoint_auth_method: none
  - client_id: minter
    client_secret: minter-secret
    grant_types: [client_credentials]
    key_ids: [payments]
    audiences: [serviceb]
users:
  - username: alice
    password: alice-password
    claims: { name: Alice Liddell, email: alice@example.com }
`,
      // Client mode: minting needs a client of OIDC_CONFIG, as on any factory off loopback.
      () => ({ ISSUE_AUTH: 'client' }),
    ),
    chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
  ]);
  origin = `http://localhost:${factory.port}`;
  publicUrl = factory.base;
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await factory?.stop();
});

/** A page on the console's Login panel that records script errors and CSP violations. */
async function loginPanel(): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
  await page.goto(`${origin}/console/#login`);
  await page.locator('#factory-info', { hasText: 'OpenID provider on' }).waitFor();
  return { page, problems };
}

describe('the Login panel on a factory with OIDC_CONFIG', () => {
  it('logs in with its defaults and shows each step: the authorize URL, the login form, the code, the token response, both tokens decoded, userinfo', async () => {
    const { page, problems } = await loginPanel();
    expect(await page.inputValue('#login-client')).toBe('console');
    expect(await page.inputValue('#login-redirect')).toBe(`${origin}/console/`);
    await page.click('#login-start');
    const authorize = new URL((await page.getAttribute('#login-continue', 'href'))!);
    // PUBLIC_URL's default: the address the factory listens on.
    expect(`${authorize.origin}${authorize.pathname}`).toBe(`${publicUrl}/authorize`);
    expect(Object.fromEntries(authorize.searchParams)).toMatchObject({ client_id: 'console', redirect_uri: `${origin}/console/`, response_type: 'code', code_challenge_method: 'S256' });
    expect(await page.locator('#login-steps').innerText()).toContain(`${publicUrl}/authorize?client_id=console`);

    await page.click('#login-continue');
    await page.waitForURL(`${publicUrl}/authorize?**`);
    await page.fill('#username', 'alice');
    await page.fill('#password', 'alice-password');
    await page.click('button[type=submit]');
    await page.locator('#login-status .verdict', { hasText: 'Logged in' }).waitFor({ timeout: 30_000 });
    expect(await page.locator('#login-status').innerText()).toContain('Logged in: every step passed');
    // The code is gone from the address bar.
    expect(page.url()).toBe(`${origin}/console/#login`);

    const steps = await page.locator('#login-steps > li').allInnerTexts();
    expect(steps.map((s) => s.split(/[\s(]/, 2).join(' '))).toEqual(['1. Authorization', '2. Code', '3. Token', '4. Tokens', '5. Userinfo']);
    expect(steps[0]).toContain(`${publicUrl}/authorize?client_id=console`);
    expect(steps[1]).toMatch(/^2\. Code received \(\d+ characters, state checked\)/);
    expect(steps[2]).toContain(`from ${origin}/token`);
    expect(steps[2]).not.toMatch(/eyJ/);
    const [idToken, accessToken] = await page.locator('#login-steps pre[aria-label="id token"], #login-steps pre[aria-label="access token"]').allInnerTexts();
    expect(JSON.parse(idToken!)).toMatchObject({ iss: 'https://jwt-factory/', sub: 'alice', aud: 'console', azp: 'console', name: 'Alice Liddell' });
    expect(JSON.parse(accessToken!)).toMatchObject({ iss: 'https://jwt-factory/', sub: 'alice', client_id: 'console', scope: 'openid profile' });
    expect(JSON.parse(await page.locator('#login-steps pre[aria-label="Userinfo"]').innerText())).toEqual({ sub: 'alice', name: 'Alice Liddell' });
    expect(problems).toEqual([]);
    await screenshot(page, 'login-flow', true);
    await page.close();
  });

  it('shows the factory refusing a wrong password on its own page, and names the refusal of a redirect URI it does not know', async () => {
    const { page } = await loginPanel();
    await page.click('#login-start');
    await page.click('#login-continue');
    await page.fill('#username', 'alice');
    await page.fill('#password', 'not her password');
    await page.click('button[type=submit]');
    await page.locator('body', { hasText: 'Wrong username or password.' }).waitFor();

    await page.goto(`${origin}/console/#login`);
    await page.fill('#login-redirect', `${origin}/elsewhere/`);
    await page.click('#login-start');
    await page.click('#login-continue');
    // An unregistered redirect_uri is never redirected to (RFC 6749 §4.1.2.1): the factory's error page says why.
    await page.locator('body', { hasText: 'redirect_uri is not registered for this client' }).waitFor();
    await page.close();
  });
});

describe('the Mint panel on a factory with ISSUE_AUTH=client', () => {
  it("says the factory wants client credentials, takes them, and mints for the client's own keyId", async () => {
    const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(`${origin}/console/#mint`);
    await page.locator('#factory-info', { hasText: 'OpenID provider on' }).waitFor();
    await page.fill('#mint-keyid', 'payments');
    await page.click('#mint-submit');
    // A keyId this factory does not have yet: asked first, then the factory's 401.
    await page.locator('#mint-new-key').waitFor();
    await page.click('#mint-create');
    await page.locator('#mint-credentials').waitFor();
    expect(await page.locator('#mint-status').innerText()).toMatch(/The factory wants client credentials \(401\)\s+401 invalid_client: /);
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('mint-client-id');
    await page.fill('#mint-client-id', 'minter');
    await page.fill('#mint-client-secret', 'wrong');
    await page.click('#mint-submit');
    await page.locator('#mint-status .verdict.bad', { hasText: '401 invalid_client' }).waitFor();
    await page.fill('#mint-client-secret', 'minter-secret');
    await page.click('#mint-submit');
    await page.locator('#mint-status .verdict.ok', { hasText: 'Minted with payments' }).waitFor();
    const token = await page.inputValue('#mint-token');
    expect(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString())).toMatchObject({ iss: 'https://jwt-factory/', sub: 'minter', aud: 'serviceb' });
    expect(await page.content()).not.toContain('minter-secret');
    expect(problems).toEqual([]);
    await page.close();
  });
});
