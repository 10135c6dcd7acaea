import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { parseDocument, stringify } from 'yaml';
import { ROOT } from './bench/launch.js';
import { CHROMIUM, CHROMIUM_ARGS } from './tools.js';

/**
 * `npm run demo`'s browser scenario: headless chromium logs alice in at the factory through
 * mesh-gateway's login mode (the token handler in front of the webui), the page calls serviceb's
 * and servicec's APIs through the gateway, and the rows say what came back, what the cookie is,
 * that no token reached the page, and that after logout the next API call is refused.
 */

/** The port of the gateway's registered redirect URIs (jwt-factory/oidc.demo.yaml, client mesh-gateway). */
export const LOGIN_GATEWAY_PORT = 8080;
/** The demo client of the gateway and its secret (jwt-factory/oidc.demo.yaml). */
export const LOGIN_CLIENT = { id: 'mesh-gateway', secret: 'mesh-gateway-secret' };
const DEMO_OIDC = path.join(ROOT, 'jwt-factory', 'oidc.demo.yaml');
const USER = { username: 'alice', password: 'alice-password' };
const JWT_LIKE = /eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+/;
/** How long one browser step may take on a loaded machine. */
const STEP_MS = 20_000;

/**
 * The OIDC_CONFIG the factory gets: the demo file itself when the gateway listens on 8080, else a
 * copy in `dir` whose mesh-gateway client registers the chosen port instead (the provider compares
 * redirect URIs exactly, OAuth 2.0 Security BCP §4.1.3), everything else unchanged.
 */
export async function demoOidcConfig(port: number, dir: string): Promise<string> {
  if (port === LOGIN_GATEWAY_PORT) return DEMO_OIDC;
  const doc = parseDocument(await readFile(DEMO_OIDC, 'utf8'));
  const clients = (doc.toJS() as { clients?: Array<{ client_id?: string }> }).clients ?? [];
  const index = clients.findIndex((c) => c.client_id === LOGIN_CLIENT.id);
  if (index < 0) throw new Error(`${path.relative(ROOT, DEMO_OIDC)} has no ${LOGIN_CLIENT.id} client`);
  const moved = (uri: string) => {
    const u = new URL(uri);
    if (u.port === String(LOGIN_GATEWAY_PORT)) u.port = String(port);
    return u.href;
  };
  for (const field of ['redirect_uris', 'post_logout_redirect_uris']) {
    const uris = (clients[index] as Record<string, unknown>)[field];
    if (Array.isArray(uris)) doc.setIn(['clients', index, field], doc.createNode(uris.map((u) => moved(String(u))), { flow: true }));
  }
  const file = path.join(dir, 'oidc.demo.yaml');
  await writeFile(file, doc.toString());
  return file;
}

/**
 * The mesh rules at the login gateway, in `dir`: the user's access token verified against the
 * factory's keys (inline JWKS), and /api/ only for a request principal of the factory, so the
 * API rows show that the rules behind the login see alice.
 */
export async function writeLoginRules(dir: string, issuer: string, jwks: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const objects = [
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'RequestAuthentication',
      metadata: { name: 'webui-users', namespace: 'jwt-suite' },
      spec: { jwtRules: [{ issuer, jwks, audiences: ['serviceb', 'servicec'], forwardOriginalToken: true }] },
    },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'webui-api-needs-a-user', namespace: 'jwt-suite' },
      spec: { rules: [{ to: [{ operation: { notPaths: ['/api/*'] } }] }, { from: [{ source: { requestPrincipals: [`${issuer}/*`] } }], to: [{ operation: { paths: ['/api/*'] } }] }] },
    },
  ];
  await writeFile(path.join(dir, 'webui-rules.yaml'), objects.map((o) => stringify(o)).join('---\n'));
  return dir;
}

/** mesh-gateway's flags in login mode for the demo (the secret goes in LOGIN_CLIENT_SECRET). */
export function loginGatewayArgs(o: { rules: string; webui: string; port: number; host: string; factory: string }): string[] {
  return [
    '--policies', o.rules,
    '--upstream', o.webui,
    '--port', String(o.port),
    '--host', o.host,
    // The factory's issuer (https://jwt-factory/) is no URL to fetch: the discovery document's own URL.
    '--login-issuer', `${o.factory}/.well-known/openid-configuration`,
    '--login-client-id', LOGIN_CLIENT.id,
    '--public-url', `http://${o.host}:${o.port}`,
    '--login-claim-header', 'name=x-user-name',
    '--login-claim-header', 'email=x-user-email',
    '--metrics-port', '0',
  ];
}

interface Step {
  label: string;
  expected: string;
  run: () => Promise<string>;
}

/** Plays the browser rows: one chromium, one page. Rows for the table and how many came out as expected. */
export async function playBrowser(o: { gateway: string; factory: string; metrics: string }): Promise<{ rows: string[][]; good: number; total: number; skipped: boolean; ms: number }> {
  const t0 = performance.now();
  const header = ['the webui in a browser, logged in by mesh-gateway', 'expected', 'outcome', 'ms', ''];
  let browser: Browser | undefined;
  const bodies: string[] = [];
  let cookie = '';
  // The page, once chromium runs; every step below uses it.
  let page!: import('playwright-core').Page;
  const call = async (name: string) => {
    await page.waitForSelector(`#${name}-status.ok, #${name}-status.refused`, { timeout: STEP_MS });
    const status = (await page.textContent(`#${name}-status`))!.replace(/^HTTP /, '');
    const answer = JSON.parse((await page.textContent(`#${name}`)) ?? '{}') as { message?: string; error?: { code?: string } };
    return `${status} ${answer.message ?? answer.error?.code ?? ''}`.trim();
  };
  const steps: Step[] = [
    {
      label: 'alice logs in on the factory\'s page',
      expected: 'Logged in as Alice Liddell (alice)',
      run: async () => {
        await page.goto(`${o.gateway}/`, { timeout: STEP_MS });
        await page.waitForSelector('input[name=username]', { timeout: STEP_MS });
        if (!page.url().startsWith(`${o.factory}/authorize?`)) return `sent to ${new URL(page.url()).origin}, not the factory`;
        await page.fill('input[name=username]', USER.username);
        await page.fill('input[name=password]', USER.password);
        await page.click('button[type=submit]');
        await page.waitForSelector('#who[data-sub]', { timeout: STEP_MS });
        return (await page.textContent('#who')) ?? '';
      },
    },
    { label: 'the page calls serviceb via the gateway', expected: '200 Hello from serviceb', run: () => call('serviceb') },
    { label: 'the page calls servicec via the gateway', expected: '200 Hello from servicec', run: () => call('servicec') },
    {
      label: 'the cookie the browser holds',
      expected: 'mesh-session, HttpOnly, SameSite=Strict, 43 chars',
      run: async () => {
        const cookies = await page.context().cookies(o.gateway);
        cookie = cookies.find((c) => c.name === 'mesh-session')?.value ?? '';
        return cookies.map((c) => [c.name, c.httpOnly ? 'HttpOnly' : 'not HttpOnly', `SameSite=${c.sameSite}`, `${c.value.length} chars`].join(', ')).join('; ') || 'none';
      },
    },
    {
      label: 'tokens the page\'s script could read',
      expected: 'none',
      run: async () => {
        const seen = await page.evaluate(() => ({ cookie: document.cookie, storage: localStorage.length + sessionStorage.length }));
        const where = [seen.cookie && 'document.cookie', seen.storage > 0 && 'storage', bodies.some((b) => JWT_LIKE.test(b)) && 'a response body'].filter(Boolean);
        return where.length ? `found in ${where.join(', ')}` : 'none';
      },
    },
    {
      label: 'logout, then the factory asks again',
      expected: 'login form of the factory',
      run: async () => {
        await page.click('#logout button');
        await page.waitForSelector('input[name=username]', { timeout: STEP_MS });
        return page.url().startsWith(`${o.factory}/authorize?`) ? 'login form of the factory' : `landed on ${new URL(page.url()).origin}`;
      },
    },
    {
      label: 'the next API call with the old cookie',
      expected: '401 login_required',
      run: async () => {
        const res = await fetch(`${o.gateway}/api/serviceb`, { headers: { accept: 'application/json', cookie: `mesh-session=${cookie}` }, redirect: 'manual', signal: AbortSignal.timeout(STEP_MS) });
        const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
        return `${res.status} ${body.error?.code ?? ''}`.trim();
      },
    },
    {
      label: "the gateway's /metrics",
      expected: 'login ok 1, logout ok 1',
      run: async () => {
        const text = await (await fetch(`${o.metrics}/metrics`, { signal: AbortSignal.timeout(STEP_MS) })).text();
        const count = (event: string) => new RegExp(`^mesh_gateway_login_events_total\\{event="${event}",outcome="ok"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 'absent';
        return `login ok ${count('login')}, logout ok ${count('logout')}`;
      },
    },
  ];
  const rows = [header];
  if (!existsSync(CHROMIUM)) {
    rows.push(...steps.map((s) => [s.label, s.expected, `skipped: no chromium at ${CHROMIUM}`, '0', 'skipped']));
    return { rows, good: steps.length, total: steps.length, skipped: true, ms: 0 };
  }
  let good = 0;
  let failed = false;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: STEP_MS * 2 });
    page = await (await browser.newContext()).newPage();
    page.on('response', (r) => void r.text().then((t) => bodies.push(t), () => undefined));
    for (const step of steps) {
      const started = performance.now();
      let outcome: string;
      if (failed) {
        outcome = 'not reached';
      } else {
        try {
          outcome = await step.run();
        } catch (err) {
          outcome = `failed: ${(err as Error).message.split('\n')[0]}`;
        }
      }
      const ok = outcome === step.expected;
      if (ok) good += 1;
      else failed = true;
      rows.push([step.label, step.expected, outcome, String(Math.round(performance.now() - started)), ok ? 'ok' : 'UNEXPECTED']);
    }
  } catch (err) {
    rows.push(['chromium', 'starts', `failed: ${(err as Error).message.split('\n')[0]}`, '0', 'UNEXPECTED']);
  } finally {
    await browser?.close();
  }
  return { rows, good, total: steps.length, skipped: false, ms: Math.round(performance.now() - t0) };
}
