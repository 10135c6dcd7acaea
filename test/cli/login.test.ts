import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestProvider, type TestProvider } from '../helpers/oidc-provider.js';
import { freePort } from '../helpers/process.js';
import { CHROMIUM, CHROMIUM_ARGS, requireTool } from '../helpers/tools.js';
import { runJwt } from './run.js';

/**
 * jwt login and jwt exchange against a certified OpenID provider (panva's oidc-provider on a real
 * port), a real browser doing the user's part. The factory's own provider speaks the same protocol.
 */

let provider: TestProvider;
let browser: Browser;
let dir: string;
let port: number;

beforeAll(async () => {
  requireTool('chromium', CHROMIUM);
  dir = await mkdtemp(path.join(tmpdir(), 'jwt-login-'));
  port = await freePort();
  provider = await startTestProvider({ clientId: 'cli', clientSecret: 'cli-secret', redirectUris: [`http://127.0.0.1:${port}/callback`], postLogoutRedirectUris: [], accessTokenTtl: 300, deviceFlow: true });
  await writeFile(path.join(dir, 'secret'), 'cli-secret\n', { mode: 0o600 });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});
afterAll(async () => {
  await browser?.close();
  await provider?.close();
  await rm(dir, { recursive: true, force: true });
});

const jwt = runJwt;

describe('jwt login', () => {
  it('runs the authorization code flow with PKCE through a loopback redirect and stores the tokens with mode 0600, printing none', async () => {
    const out = path.join(dir, 'tokens.json');
    const page = await browser.newPage();
    let opened = false;
    const result = await jwt(['login', '--issuer', provider.issuer, '--client-id', 'cli', '--client-secret-file', path.join(dir, 'secret'), '--port', String(port), '--out', out, '--scope', 'openid profile'], (stderr) => {
      const url = /^(http\S+\/auth\?\S+)$/m.exec(stderr)?.[1];
      if (!url || opened) return;
      opened = true;
      void (async () => {
        await page.goto(url);
        await page.fill('input[name=login]', 'alice');
        await page.fill('input[name=password]', 'any password');
        await page.click('button[type=submit]');
      })();
    });
    expect(result.code, result.stderr).toBe(0);
    await page.waitForURL(`http://127.0.0.1:${port}/callback?**`);
    expect(await page.textContent('body')).toContain('Logged in');
    await page.close();
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const tokens = JSON.parse(await readFile(out, 'utf8'));
    expect(decodeJwt(tokens.id_token)).toMatchObject({ sub: 'alice', iss: provider.issuer, aud: 'cli' });
    expect(Object.keys(tokens)).toEqual(expect.arrayContaining(['access_token', 'id_token', 'refresh_token']));
    expect(result.stdout).toBe(`logged in as alice: access_token, id_token, refresh_token, expires in ${tokens.expires_in} s\nstored in ${out} (mode 0600)\n`);
    expect(result.stdout + result.stderr).not.toContain(tokens.access_token);
    expect(result.stderr).toContain(`redirect to http://127.0.0.1:${port}/callback`);
  });

  it('runs the device flow (RFC 8628) with --device: prints where to go and the code, polls until the user approves in a browser', async () => {
    const out = path.join(dir, 'device-tokens.json');
    const page = await browser.newPage();
    let approving: Promise<void> | undefined;
    const result = await jwt(['login', '--issuer', provider.issuer, '--client-id', 'cli', '--client-secret-file', path.join(dir, 'secret'), '--device', '--out', out, '--timeout', '120'], (stderr) => {
      const match = /^To log in, open (\S+) and enter the code (\S+)$/m.exec(stderr);
      if (!match || approving) return;
      // The user's part, in the browser: the verification page (code prefilled), the login, done.
      approving = (async () => {
        await page.goto(match[1]!);
        expect(await page.textContent('body')).toContain(match[2]!);
        await page.click('button[type=submit]');
        await page.fill('input[name=login]', 'alice');
        await page.fill('input[name=password]', 'any password');
        await page.click('button[type=submit]');
      })();
    });
    expect(result.code, result.stderr).toBe(0);
    await approving;
    await page.close();
    expect(result.stderr).toMatch(new RegExp(`To log in, open ${provider.issuer}/device\\?user_code=\\S+ and enter the code \\S+`));
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const tokens = JSON.parse(await readFile(out, 'utf8'));
    expect(decodeJwt(tokens.id_token)).toMatchObject({ sub: 'alice', iss: provider.issuer, aud: 'cli' });
    expect(result.stdout).toMatch(/^logged in as alice: access_token, id_token/);
    expect(result.stdout + result.stderr).not.toContain(tokens.access_token);
  });

  it('gives up on a device login nobody approves within --timeout, and exits 2 without a client id', async () => {
    const res = await jwt(['login', '--issuer', provider.issuer, '--client-id', 'cli', '--client-secret-file', path.join(dir, 'secret'), '--device', '--timeout', '1', '--json']);
    expect(res.code).toBe(1);
    expect(JSON.parse(res.stdout).error.code).toBe('login_timeout');
    expect((await jwt(['login', '--issuer', provider.issuer])).code).toBe(2);
  });
});

describe('jwt exchange', () => {
  it("names the provider's refusal with RFC 6749's error (this provider has no token exchange)", async () => {
    await writeFile(path.join(dir, 'subject.jwt'), 'eyJhbGciOiJub25lIn0.e30.\n');
    const res = await jwt(['exchange', '--issuer', provider.issuer, '--client-id', 'cli', '--client-secret-file', path.join(dir, 'secret'), '--subject-token-file', path.join(dir, 'subject.jwt'), '--audience', 'serviceb', '--json']);
    expect(res.code).toBe(1);
    expect(JSON.parse(res.stdout).error).toMatchObject({ code: 'exchange_refused', reason: expect.stringMatching(/^unsupported_grant_type|^unauthorized_client/) });
    expect((await jwt(['exchange', '--issuer', provider.issuer, '--client-id', 'cli'])).code).toBe(2);
  });
});
