import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { cookieJar, hiddenField } from '../factory/oidc/harness.js';
import { freePort, runScript, startProcess, type Started } from '../helpers/process.js';
import { send, serverPool } from './login/send.js';

/**
 * `mesh-gateway --metrics-port` as a real process: the decisions by status and deciding policy,
 * the login's events against a real factory, the process metrics, and labels that only ever
 * name loaded policies whatever the requests carry.
 */

const ISSUER = 'https://issuer.metrics.test';
const pool = serverPool();
let dir: string;
const running: Started[] = [];
let upstreamPort: number;

/** One sample of a Prometheus text exposition, or undefined when the series is absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v) && Object.keys(have).length === Object.keys(labels).length) return Number(m[3]);
  }
  return undefined;
}

/** Every value a label takes in one metric's series. */
function labelValues(text: string, name: string, label: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const v = new RegExp(`${label}="([^"]*)"`).exec(line)?.[1];
    if (v !== undefined) out.add(v);
  }
  return out;
}

const scrape = async (gateway: Started) => {
  const res = await send(`http://127.0.0.1:${gateway.listening.metricsPort}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.body;
};

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'gateway-metrics-'));
  upstreamPort = await pool.serve(
    http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ upstream: true, path: req.url }));
    }),
  );
});

afterAll(async () => {
  await Promise.all(running.map((p) => p.stop()));
  await pool.closeAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('mesh-gateway --metrics-port: the decisions', () => {
  let gateway: Started;
  let token: (sub: string) => Promise<string>;
  let jwks: string;
  const policiesDir = () => path.join(dir, 'rules');

  /** The rules file: a RequestAuthentication, a DENY and an ALLOW policy named `allowName`. */
  const rules = (allowName: string) => {
    const objects = [
      { apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'users', namespace: 'shop' }, spec: { jwtRules: [{ issuer: ISSUER, jwks }] } },
      { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'no-admin', namespace: 'shop' }, spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] } },
      { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: allowName, namespace: 'shop' }, spec: { rules: [{ from: [{ source: { requestPrincipals: [`${ISSUER}/*`] } }], to: [{ operation: { paths: ['/api/*'] } }] }] } },
    ];
    return objects.map((o) => stringify(o)).join('---\n');
  };

  beforeAll(async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    token = (sub) => new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(ISSUER).setSubject(sub).setIssuedAt().setExpirationTime('5m').sign(privateKey);
    jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] });
    await mkdir(policiesDir());
    await writeFile(path.join(policiesDir(), 'rules.yaml'), rules('users-only'));
    gateway = await startProcess('mesh/gateway-main.ts', {
      args: ['--policies', policiesDir(), '--upstream', `http://127.0.0.1:${upstreamPort}`, '--port', '0', '--metrics-port', '0', '--workload', 'app=shop', '--namespace', 'shop'],
    });
    running.push(gateway);
  });

  it('counts each decision by status and the policy that made it, next to the process metrics', async () => {
    const base = `http://127.0.0.1:${gateway.port}`;
    const good = `Bearer ${await token('alice')}`;
    expect((await send(`${base}/api/orders`, { headers: { authorization: good } })).status).toBe(200);
    expect((await send(`${base}/api/orders`, { headers: { authorization: good } })).status).toBe(200);
    expect((await send(`${base}/admin/users`, { headers: { authorization: good } })).status).toBe(403);
    expect((await send(`${base}/api/orders`, { headers: { authorization: `${good.slice(0, -4)}AAAA` } })).status).toBe(401);
    expect((await send(`${base}/api/orders`)).status).toBe(403);
    const text = await scrape(gateway);
    expect(sample(text, 'mesh_gateway_decisions_total', { status: '200', policy: 'shop/users-only' })).toBe(2);
    expect(sample(text, 'mesh_gateway_decisions_total', { status: '403', policy: 'shop/no-admin' })).toBe(1);
    expect(sample(text, 'mesh_gateway_decisions_total', { status: '401', policy: 'shop/users' })).toBe(1);
    expect(sample(text, 'mesh_gateway_decisions_total', { status: '403', policy: 'none' })).toBe(1);
    expect(sample(text, 'mesh_gateway_policies_loaded')).toBe(3);
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds']) expect(sample(text, name), name).toBeGreaterThanOrEqual(0);
  });

  it('labels name loaded policies only, whatever the requests carry; a renamed policy is a new label after the reload', async () => {
    const base = `http://127.0.0.1:${gateway.port}`;
    for (let i = 0; i < 20; i += 1) {
      const junk = `ns[shop]-policy[evil-${i}]-rule[0]`;
      await send(`${base}/api/${encodeURIComponent(junk)}?policy=${i}`, { headers: { authorization: `Bearer ${junk}`, 'x-policy': junk } });
      await send(`${base}/other-${i}`, { headers: { authorization: `Bearer ${await token(junk)}` } });
    }
    let text = await scrape(gateway);
    expect(labelValues(text, 'mesh_gateway_decisions_total', 'policy')).toEqual(new Set(['shop/users-only', 'shop/no-admin', 'shop/users', 'none']));

    const since = gateway.output().length;
    await writeFile(path.join(policiesDir(), 'rules.yaml'), 'kind: AuthorizationPolicy\napiVersion: security.istio.io/v1\nmetadata: { name: x }\nspec: { action: MAYBE }\n');
    await expect.poll(() => gateway.output().slice(since).includes('reload failed'), { timeout: 20_000 }).toBe(true);
    await writeFile(path.join(policiesDir(), 'rules.yaml'), rules('members'));
    await expect.poll(() => /"policies":3,"version":2/.test(gateway.output().slice(since)), { timeout: 20_000 }).toBe(true);
    expect((await send(`${base}/api/orders`, { headers: { authorization: `Bearer ${await token('bob')}` } })).status).toBe(200);
    text = await scrape(gateway);
    expect(sample(text, 'mesh_gateway_decisions_total', { status: '200', policy: 'shop/members' })).toBe(1);
    expect(sample(text, 'mesh_gateway_reloads_total', { outcome: 'failed' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'mesh_gateway_reloads_total', { outcome: 'ok' })).toBeGreaterThanOrEqual(1);
  });

  it('the metrics port serves /metrics only; the proxied port still forwards /metrics to the upstream', async () => {
    const other = await send(`http://127.0.0.1:${gateway.listening.metricsPort}/api/orders`);
    expect(other.status).toBe(404);
    expect(JSON.parse(other.body).error.code).toBe('route_not_found');
    const post = await send(`http://127.0.0.1:${gateway.listening.metricsPort}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    // On the proxied port /metrics is the upstream's path like any other: the rules decide it (no ALLOW rule
    // names it here), and an allowed one reaches the upstream.
    const authorization = `Bearer ${await token('alice')}`;
    const decided = await send(`http://127.0.0.1:${gateway.port}/metrics`, { headers: { authorization } });
    expect([decided.status, decided.body]).toEqual([403, 'RBAC: access denied']);
    const proxied = await send(`http://127.0.0.1:${gateway.port}/api/metrics`, { headers: { authorization } });
    expect(JSON.parse(proxied.body)).toEqual({ upstream: true, path: '/api/metrics' });
  });

  it('--metrics-port with --envoy, or out of range, is a usage error naming the flag', async () => {
    const envoy = await runScript('mesh/gateway-main.ts', ['--policies', policiesDir(), '--upstream', 'http://127.0.0.1:1', '--envoy', '/bin/true', '--metrics-port', '0']);
    expect(envoy.code).toBe(2);
    expect(envoy.stderr).toMatch(/--metrics-port counts the engine's decisions/);
    const range = await runScript('mesh/gateway-main.ts', ['--policies', policiesDir(), '--upstream', 'http://127.0.0.1:1', '--metrics-port', '70000']);
    expect(range.code).toBe(2);
    expect(range.stderr).toMatch(/--metrics-port must be 0\.\.65535, got "70000"/);
  });
});

describe('mesh-gateway --metrics-port: the login mode against a real factory', () => {
  const SECRET = 'metrics-test-gateway-secret';
  let factory: Started;
  let gateway: Started;
  let issuer: string;
  let publicUrl: string;

  beforeAll(async () => {
    const factoryPort = await freePort();
    const gatewayPort = await freePort();
    issuer = `http://localhost:${factoryPort}`;
    publicUrl = `http://127.0.0.1:${gatewayPort}`;
    const oidcDir = path.join(dir, 'login');
    await mkdir(path.join(oidcDir, 'rules'), { recursive: true });
    await writeFile(
      path.join(oidcDir, 'oidc.yaml'),
      stringify({
        clients: [
          {
            client_id: 'gw',
            client_secret: SECRET,
            redirect_uris: [`${publicUrl}/callback`],
            post_logout_redirect_uris: [`${publicUrl}/`],
            grant_types: ['authorization_code', 'refresh_token'],
            scope: 'openid profile email offline_access',
            // Shorter than the gateway's 30 s refresh-ahead: every API call refreshes first.
            access_token_lifetime: 5,
          },
        ],
        users: [{ username: 'alice', password: 'alice-password', claims: { name: 'Alice' } }],
      }),
    );
    [factory, gateway] = await Promise.all([
      startProcess('jwt-factory/main.ts', {
        env: { PORT: String(factoryPort), HOST: '127.0.0.1', KEYS_DIR: path.join(oidcDir, 'keys'), OIDC_CONFIG: path.join(oidcDir, 'oidc.yaml'), OIDC_ALG: 'ES256', ISSUER: issuer, PUBLIC_URL: issuer },
        timeoutMs: 60_000,
      }),
      startProcess('mesh/gateway-main.ts', {
        args: ['--policies', path.join(oidcDir, 'rules'), '--upstream', `http://127.0.0.1:${upstreamPort}`, '--port', String(gatewayPort), '--metrics-port', '0', '--login-issuer', issuer, '--login-client-id', 'gw', '--public-url', publicUrl],
        env: { LOGIN_CLIENT_SECRET: SECRET },
        timeoutMs: 60_000,
      }),
    ]);
    running.push(factory, gateway);
  }, 90_000);

  /** The browser's part, over HTTP: the redirect to the factory, its login form, the callback; answers the session cookie. */
  async function logIn(): Promise<string> {
    const start = await send(`${publicUrl}/`, { headers: { accept: 'text/html' } });
    expect(start.status).toBe(302);
    const gatewayJar = cookieJar('', start.headers['set-cookie']);
    const form = await fetch(start.headers.location!, { redirect: 'manual' });
    const html = await form.text();
    const factoryJar = cookieJar('', form.headers.getSetCookie());
    const posted = await fetch(`${issuer}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: factoryJar },
      body: new URLSearchParams({ csrf: hiddenField(html, 'csrf'), request: hiddenField(html, 'request'), username: 'alice', password: 'alice-password' }),
    });
    const callback = posted.headers.get('location')!;
    expect(callback.startsWith(`${publicUrl}/callback?`)).toBe(true);
    const done = await send(callback, { headers: { cookie: gatewayJar } });
    expect(done.status).toBe(200);
    return cookieJar('', done.headers['set-cookie']);
  }

  it('counts logins, refreshes, logouts and the login\'s refusals, with zeros from the start', async () => {
    const before = await scrape(gateway);
    for (const [event, outcome] of [['login', 'ok'], ['refresh', 'refused'], ['logout', 'ok']]) {
      expect(sample(before, 'mesh_gateway_login_events_total', { event: event!, outcome: outcome! }), `${event} ${outcome}`).toBe(0);
    }
    const cookie = await logIn();
    const api = { accept: 'application/json', cookie };
    expect((await send(`${publicUrl}/api/orders`, { headers: api })).status).toBe(200);
    expect((await send(`${publicUrl}/api/orders`, { headers: api })).status).toBe(200);
    expect((await send(`${publicUrl}/api/orders`, { headers: { accept: 'application/json' } })).status).toBe(401);
    expect((await send(`${publicUrl}/api/orders`, { method: 'POST', headers: { ...api, origin: 'https://evil.example' } })).status).toBe(403);
    const out = await send(`${publicUrl}/logout`, { headers: { cookie } });
    expect(out.status).toBe(303);
    expect(out.headers.location!.startsWith(`${issuer}/logout?`)).toBe(true);

    const text = await scrape(gateway);
    expect(sample(text, 'mesh_gateway_login_events_total', { event: 'login', outcome: 'started' })).toBe(1);
    expect(sample(text, 'mesh_gateway_login_events_total', { event: 'login', outcome: 'ok' })).toBe(1);
    expect(sample(text, 'mesh_gateway_login_events_total', { event: 'refresh', outcome: 'ok' })).toBe(2);
    expect(sample(text, 'mesh_gateway_login_events_total', { event: 'logout', outcome: 'ok' })).toBe(1);
    expect(sample(text, 'mesh_gateway_login_refusals_total', { code: 'login_required' })).toBe(1);
    expect(sample(text, 'mesh_gateway_login_refusals_total', { code: 'csrf_refused' })).toBe(1);
    // With no policy loaded the rules let every logged-in request through.
    expect(sample(text, 'mesh_gateway_decisions_total', { status: '200', policy: 'none' })).toBe(2);
    expect(text).not.toContain(SECRET);
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]+\./);
  });
});
