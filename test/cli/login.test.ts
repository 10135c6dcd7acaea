import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/jwt.js';
import { startTestProvider, type TestProvider } from '../helpers/oidc-provider.js';
import { freePort } from '../helpers/process.js';
import { CHROMIUM, CHROMIUM_ARGS, requireTool } from '../helpers/tools.js';

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
  provider = await startTestProvider({ clientId: 'cli', clientSecret: 'cli-secret', redirectUris: [`http://127.0.0.1:${port}/callback`], postLogoutRedirectUris: [], accessTokenTtl: 300 });
  await writeFile(path.join(dir, 'secret'), 'cli-secret\n', { mode: 0o600 });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});
afterAll(async () => {
  await browser?.close();
  await provider?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Runs a command in this process; `onErr` sees what it writes on stderr as it goes. */
async function jwt(args: string[], onErr: (text: string) => void = () => undefined) {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { out: (t) => void (stdout += t), err: (t) => (stderr += t, onErr(stderr)), now: () => new Date(), stdin: async () => '' });
  return { code, stdout, stderr };
}

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

  it('says the provider has no device flow, and exits 2 without a client id', async () => {
    const device = await jwt(['login', '--issuer', provider.issuer, '--client-id', 'cli', '--device', '--json']);
    expect(device.code).toBe(1);
    expect(JSON.parse(device.stdout).error.code).toBe('device_flow_unsupported');
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
