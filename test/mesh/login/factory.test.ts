import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpClient } from '../../../lib/httpclient.js';
import { silentLogger } from '../../../lib/logger.js';
import { createGateway } from '../../../mesh/gateway.js';
import { createLogin } from '../../../mesh/login/handler.js';
import { createOidcClient } from '../../../mesh/login/oidc.js';
import { createMemorySessionStore } from '../../../mesh/login/store.js';
import { createWebui } from '../../../webui/app.js';
import { freePort, ROOT, startProcess, type Started } from '../../helpers/process.js';
import { CHROMIUM, CHROMIUM_ARGS, requireTool } from '../../helpers/tools.js';
import { send, serverPool } from './send.js';

/**
 * The same login with the suite's own issuer: a real factory process with OIDC_CONFIG, the
 * gateway in front of the webui, Debian's chromium. Runs once the factory is an OpenID Provider
 * (jwt-factory/oidc/); the full behaviour against a certified provider is in browser.test.ts.
 */

const HAS_OIDC = existsSync(path.join(ROOT, 'jwt-factory', 'oidc'));
const SECRET = 'factory-test-webui-secret';

let dir: string;
let factory: Started;
let browser: Browser;
let issuer: string;
let gatewayUrl: string;
const pool = serverPool();
const serve = pool.serve;


describe.skipIf(!HAS_OIDC)('the login at the gateway with the factory as the issuer', () => {
  beforeAll(async () => {
    const chromiumPath = requireTool('chromium', CHROMIUM);
    dir = await mkdtemp(path.join(tmpdir(), 'login-factory-'));
    const factoryPort = await freePort();
    const gatewayPort = await freePort();
    issuer = `http://localhost:${factoryPort}`;
    gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
    await writeFile(
      path.join(dir, 'oidc.yaml'),
      [
        'clients:',
        '  - client_id: webui',
        `    client_secret: ${SECRET}`,
        `    redirect_uris: [${gatewayUrl}/callback]`,
        `    post_logout_redirect_uris: [${gatewayUrl}/]`,
        '    grant_types: [authorization_code, refresh_token]',
        '    response_types: [code]',
        '    token_endpoint_auth_method: client_secret_basic',
        '    scope: openid profile email offline_access',
        '    audiences: [serviceb]',
        'users:',
        '  - username: alice',
        '    password: alice-password',
        '    claims: { name: Alice Liddell, email: alice@example.com }',
        '',
      ].join('\n'),
    );
    factory = await startProcess('jwt-factory/main.ts', {
      env: { PORT: String(factoryPort), HOST: '127.0.0.1', KEYS_DIR: path.join(dir, 'keys'), OIDC_CONFIG: path.join(dir, 'oidc.yaml'), ISSUER: issuer, PUBLIC_URL: issuer },
    });
    const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as { jwks_uri: string };
    const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
    const backend = http.createServer(async (req, res) => {
      try {
        const { payload } = await jwtVerify(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '', jwks, { issuer, audience: 'serviceb' });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ service: 'serviceb', user: payload.sub }));
      } catch (err) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'token_invalid', message: (err as Error).message } }));
      }
    });
    const b = await serve(backend);
    const webui = await serve(http.createServer(createWebui({ backends: { serviceb: `http://127.0.0.1:${b}`, servicec: `http://127.0.0.1:${b}` }, client: createHttpClient({ timeoutMs: 5000 }), logger: silentLogger() })));
    const login = createLogin({
      options: { publicUrl: new URL(gatewayUrl), cookieName: 'mesh-session', sessionLifetimeMs: 3600_000, sessionIdleMs: 1800_000, callbackPath: '/callback', logoutPath: '/logout', apiPrefixes: ['/api/'], claimHeaders: [{ claim: 'name', header: 'x-user-name' }], refreshAheadMs: 30_000 },
      oidc: createOidcClient({ issuer: new URL(issuer), clientId: 'webui', clientSecret: SECRET, redirectUri: `${gatewayUrl}/callback`, scope: 'openid profile email offline_access', clientAuth: 'client_secret_basic', timeoutSeconds: 5 }),
      store: createMemorySessionStore({ now: Date.now, maxEntries: 100 }),
      now: Date.now,
      logger: silentLogger(),
    });
    await serve(createGateway({ rules: () => ({ policies: [], jwks: {} }), upstream: new URL(`http://127.0.0.1:${webui}`), logger: silentLogger(), login }), gatewayPort);
    browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await pool.closeAll();
    await factory?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('alice logs in on the factory\'s page, the webui shows her and serviceb accepts her token; logout ends both sessions', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const bodies: string[] = [];
    page.on('response', (r) => void r.text().then((t) => bodies.push(t), () => undefined));
    await page.goto(`${gatewayUrl}/`);
    await page.fill('input[name=username]', 'alice');
    await page.fill('input[name=password]', 'alice-password');
    await page.click('button[type=submit]');
    await page.waitForSelector('#who[data-sub="alice"]');
    expect(await page.textContent('#who')).toBe('Logged in as Alice Liddell (alice)');
    await page.waitForSelector('#serviceb-status.ok');
    expect(JSON.parse((await page.textContent('#serviceb'))!)).toEqual({ service: 'serviceb', user: 'alice' });
    const [cookie] = await context.cookies(gatewayUrl);
    expect(cookie).toMatchObject({ name: 'mesh-session', httpOnly: true, sameSite: 'Strict' });
    expect(await page.evaluate(() => document.cookie + localStorage.length + sessionStorage.length)).toBe('00');
    for (const body of bodies) expect(body).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);

    await page.click('#logout button');
    await page.waitForSelector('input[name=username]');
    expect(new URL(page.url()).origin).toBe(issuer);
    const after = await send(`${gatewayUrl}/api/serviceb`, { headers: { accept: 'application/json', cookie: `mesh-session=${cookie!.value}` } });
    expect(after.status).toBe(401);
    expect(JSON.parse(after.body).error.code).toBe('login_required');
    await context.close();
  });
});
