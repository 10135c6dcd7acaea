import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOidcFactory, type OidcFactory } from '../helpers/oidc-factory.js';
import { freePort } from '../helpers/process.js';
import { CHROMIUM, CHROMIUM_ARGS, requireTool } from '../helpers/tools.js';
import { runJwt } from './run.js';

/**
 * jwt login and jwt exchange against a real factory process with OIDC_CONFIG: a public native
 * client (`jwt-cli`) logs a user in through the loopback redirect, a real browser doing the
 * user's part on the factory's login page; a workload (`servicea`) trades that user's access
 * token for one to servicec (RFC 8693). The factory matches redirect URIs exactly, so the test
 * registers the loopback URI with a fixed free port and passes it with --port.
 */

let factory: OidcFactory;
let browser: Browser;
let dir: string;
let base: string;
let cliPort: number;

beforeAll(async () => {
  requireTool('chromium', CHROMIUM);
  cliPort = await freePort();
  [factory, browser] = await Promise.all([
    startOidcFactory(
      () => `clients:
  - client_id: jwt-cli
    client_name: jwt command line
    redirect_uris: [http://127.0.0.1:${cliPort}/callback]
    grant_types: [authorization_code, refresh_token]
    token_endpoint_auth_method: none
    scope: openid profile email offline_access
    audiences: [serviceb]
  - client_id: servicea
    client_secret: servicea-secret
    grant_types: [client_credentials, urn:ietf:params:oauth:grant-type:token-exchange]
    audiences: [serviceb, servicec]
users:
  - username: alice
    password: alice-password
    claims: { name: Alice Liddell }
`,
      // ISSUER is the factory's URL, as its README asks for local clients; PUBLIC_URL is left to its default.
      (url) => ({ ISSUER: url }),
    ),
    chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
  ]);
  ({ dir, base } = factory);
  await writeFile(path.join(dir, 'servicea-secret'), 'servicea-secret\n', { mode: 0o600 });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await factory?.stop();
});

const jwt = runJwt;
const tokensFile = () => path.join(dir, 'tokens.json');

describe('jwt login at the factory', () => {
  it('logs alice in as the public client jwt-cli: PKCE, the loopback redirect, the tokens stored with mode 0600 and never printed', async () => {
    const page = await browser.newPage();
    let user: Promise<void> | undefined;
    const result = await jwt(['login', '--factory', base, '--client-id', 'jwt-cli', '--port', String(cliPort), '--scope', 'openid profile offline_access', '--out', tokensFile(), '--timeout', '120'], (stderr) => {
      const url = /^(http\S+\/authorize\?\S+)$/m.exec(stderr)?.[1];
      if (!url || user) return;
      user = (async () => {
        await page.goto(url);
        await page.fill('#username', 'alice');
        await page.fill('#password', 'alice-password');
        await page.click('button[type=submit]');
      })();
    });
    expect(result.code, result.stderr).toBe(0);
    await user;
    await page.waitForURL(`http://127.0.0.1:${cliPort}/callback?**`);
    expect(await page.textContent('body')).toContain('Logged in');
    await page.close();
    const authorize = new URL(/^(http\S+\/authorize\?\S+)$/m.exec(result.stderr)![1]!);
    expect(`${authorize.origin}${authorize.pathname}`).toBe(`${base}/authorize`);
    expect(Object.fromEntries(authorize.searchParams)).toMatchObject({ client_id: 'jwt-cli', redirect_uri: `http://127.0.0.1:${cliPort}/callback`, code_challenge_method: 'S256' });

    expect((await stat(tokensFile())).mode & 0o777).toBe(0o600);
    const tokens = JSON.parse(await readFile(tokensFile(), 'utf8'));
    expect(decodeJwt(tokens.id_token)).toMatchObject({ iss: base, sub: 'alice', aud: 'jwt-cli', name: 'Alice Liddell' });
    expect(decodeJwt(tokens.access_token)).toMatchObject({ iss: base, sub: 'alice', aud: 'serviceb', client_id: 'jwt-cli' });
    expect(result.stdout).toBe(`logged in as alice: access_token, id_token, refresh_token, expires in ${tokens.expires_in} s, scope "openid profile offline_access"\nstored in ${tokensFile()} (mode 0600)\n`);
    expect(result.stdout + result.stderr).not.toContain(tokens.access_token);
  });

  it('says the factory offers no device flow (its discovery names no device_authorization_endpoint)', async () => {
    const device = await jwt(['login', '--factory', base, '--client-id', 'jwt-cli', '--device', '--json']);
    expect(device.code).toBe(1);
    expect(JSON.parse(device.stdout).error.code).toBe('device_flow_unsupported');
    expect(device.stderr).toContain('the provider offers no device flow (no device_authorization_endpoint)');
  });
});

describe('jwt exchange at the factory', () => {
  it("trades alice's access token for one to servicec, with servicea as the actor, and it verifies with the factory's JWKS", async () => {
    const tokens = JSON.parse(await readFile(tokensFile(), 'utf8'));
    const subject = path.join(dir, 'alice.jwt');
    await writeFile(subject, `${tokens.access_token}\n`, { mode: 0o600 });
    const res = await jwt(['exchange', '--factory', base, '--client-id', 'servicea', '--client-secret-file', path.join(dir, 'servicea-secret'), '--subject-token-file', subject, '--audience', 'servicec']);
    expect(res.code, res.stderr).toBe(0);
    const exchanged = res.stdout.trim();
    expect(decodeJwt(exchanged)).toMatchObject({ iss: base, sub: 'alice', aud: 'servicec', client_id: 'servicea', act: { sub: 'servicea' } });
    await writeFile(path.join(dir, 'delegated.jwt'), `${exchanged}\n`);
    const verified = await jwt(['verify', '--factory', base, '--token-file', path.join(dir, 'delegated.jwt'), '--aud', 'servicec', '--sub', 'alice', '--json']);
    expect(verified.code, verified.stdout).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ valid: true, claims: { act: { sub: 'servicea' } } });
  });

  it("names the factory's refusal with RFC 6749's error: an audience the client may not ask for, a wrong secret", async () => {
    const subject = path.join(dir, 'alice.jwt');
    const target = await jwt(['exchange', '--factory', base, '--client-id', 'servicea', '--client-secret-file', path.join(dir, 'servicea-secret'), '--subject-token-file', subject, '--audience', 'payments', '--json']);
    expect(target.code).toBe(1);
    expect(JSON.parse(target.stdout).error).toMatchObject({ code: 'exchange_refused', reason: expect.stringMatching(/^invalid_target/) });
    await writeFile(path.join(dir, 'wrong-secret'), 'not-the-secret\n', { mode: 0o600 });
    const wrong = await jwt(['exchange', '--factory', base, '--client-id', 'servicea', '--client-secret-file', path.join(dir, 'wrong-secret'), '--subject-token-file', subject, '--audience', 'servicec', '--json']);
    expect(wrong.code).toBe(1);
    expect(JSON.parse(wrong.stdout).error.reason).toMatch(/^invalid_client/);
    expect(wrong.stdout + wrong.stderr).not.toContain('not-the-secret');
  });
});
