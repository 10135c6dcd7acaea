import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { cookieJar, hiddenField } from '../../factory/oidc/harness.js';
import { startEnvoy, waitForPorts, type RunningEnvoy } from '../../helpers/envoy.js';
import { freePort, startProcess, type Started } from '../../helpers/process.js';
import { envoyBinaries, requireTool } from '../../helpers/tools.js';
import { serverPool } from './send.js';

/**
 * The README's comparison, measured rather than read: Envoy's own `oauth2` HTTP filter (the
 * newest Envoy installed) in front of an upstream, logging alice in at a real factory, on the
 * same points the gateway's tests cover: what the browser holds, XHR without a session, refresh
 * at expiry, logout and a copied cookie afterwards. The figures the test prints go into the
 * README; its assertions pin the behaviour the comparison states.
 */

const SECRET = 'envoy-oauth2-client-secret';
/** The access-token lifetime the factory gives this client: Envoy's cookies live as long. */
const ACCESS_TTL_S = 4;
const pool = serverPool();
let dir: string;
let factory: Started;
let envoy: RunningEnvoy;
let issuer: string;
let front: string;
const upstreamSaw: Array<{ authorization?: string; cookie?: string }> = [];

/** The Envoy listener with the oauth2 filter, as the README's alternative recipe configures it. */
function bootstrap(o: { port: number; admin: number; factoryPort: number; upstreamPort: number }) {
  const cluster = (name: string, port: number) => ({
    name,
    type: 'STATIC',
    connect_timeout: '2s',
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] },
  });
  return {
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: o.admin } } },
    static_resources: {
      secrets: [
        { name: 'token', generic_secret: { secret: { inline_string: SECRET } } },
        { name: 'hmac', generic_secret: { secret: { inline_string: 'an-hmac-secret-of-32-bytes-here!' } } },
      ],
      listeners: [
        {
          name: 'front',
          address: { socket_address: { address: '127.0.0.1', port_value: o.port } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'front',
                    route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'upstream' } }] }] },
                    http_filters: [
                      {
                        name: 'envoy.filters.http.oauth2',
                        typed_config: {
                          '@type': 'type.googleapis.com/envoy.extensions.filters.http.oauth2.v3.OAuth2',
                          config: {
                            token_endpoint: { cluster: 'factory', uri: `${issuer}/token`, timeout: '5s' },
                            authorization_endpoint: `${issuer}/authorize`,
                            end_session_endpoint: `${issuer}/logout`,
                            redirect_uri: `${front}/callback`,
                            redirect_path_matcher: { path: { exact: '/callback' } },
                            signout_path: { path: { exact: '/logout' } },
                            credentials: { client_id: 'gw', token_secret: { name: 'token' }, hmac_secret: { name: 'hmac' } },
                            auth_scopes: ['openid', 'profile', 'email', 'offline_access'],
                            auth_type: 'BASIC_AUTH',
                            forward_bearer_token: true,
                            use_refresh_token: true,
                            deny_redirect_matcher: [{ name: 'x-requested-with', present_match: true }],
                          },
                        },
                      },
                      { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [cluster('factory', o.factoryPort), cluster('upstream', o.upstreamPort)],
    },
  };
}

const get = (url: string, cookie: string, headers: Record<string, string> = {}) => fetch(url, { redirect: 'manual', headers: { ...headers, ...(cookie ? { cookie } : {}) } });

describe("Envoy's oauth2 filter against the factory, on the comparison's points", () => {
  let jar = '';
  /** Max-Age of each cookie the callback set: what a browser keeps, and for how long. */
  const maxAge = new Map<string, number>();

  beforeAll(async () => {
    const versions = requireTool('envoy', envoyBinaries());
    const newest = Object.keys(versions).sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).at(-1)!;
    dir = await mkdtemp(path.join(tmpdir(), 'envoy-oauth2-'));
    const [factoryPort, port, admin] = [await freePort(), await freePort(), await freePort()];
    issuer = `http://localhost:${factoryPort}`;
    front = `http://127.0.0.1:${port}`;
    await writeFile(
      path.join(dir, 'oidc.yaml'),
      stringify({
        clients: [
          {
            client_id: 'gw',
            client_secret: SECRET,
            redirect_uris: [`${front}/callback`],
            post_logout_redirect_uris: [`${front}/`],
            grant_types: ['authorization_code', 'refresh_token'],
            scope: 'openid profile email offline_access',
            audiences: ['serviceb'],
            access_token_lifetime: ACCESS_TTL_S,
          },
        ],
        users: [{ username: 'alice', password: 'alice-password', claims: { name: 'Alice Liddell', email: 'alice@example.com' } }],
      }),
    );
    const upstreamPort = await pool.serve(
      http.createServer((req, res) => {
        req.resume();
        upstreamSaw.push({ authorization: req.headers.authorization, cookie: req.headers.cookie });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"upstream":true}');
      }),
    );
    factory = await startProcess('jwt-factory/main.ts', {
      env: { PORT: String(factoryPort), HOST: '127.0.0.1', KEYS_DIR: path.join(dir, 'keys'), OIDC_CONFIG: path.join(dir, 'oidc.yaml'), ISSUER: issuer, PUBLIC_URL: issuer },
      timeoutMs: 60_000,
    });
    envoy = await startEnvoy(versions[newest]!, newest, bootstrap({ port, admin, factoryPort, upstreamPort }));
    await waitForPorts([port]);
  }, 90_000);

  afterAll(async () => {
    await envoy?.stop();
    await factory?.stop();
    await pool.closeAll();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('an XHR without a session gets 401 (deny_redirect_matcher), a page a 302 with PKCE and state but no nonce', async () => {
    const xhr = await get(`${front}/api/orders`, '', { 'x-requested-with': 'fetch' });
    expect(xhr.status).toBe(401);
    const page = await get(`${front}/orders`, '');
    expect(page.status).toBe(302);
    const to = new URL(page.headers.get('location')!);
    expect(`${to.origin}${to.pathname}`).toBe(`${issuer}/authorize`);
    expect(to.searchParams.get('code_challenge_method')).toBe('S256');
    expect(to.searchParams.get('state')).toBeTruthy();
    // No nonce: the id token that comes back is not bound to this login (OIDC Core §3.1.2.1).
    expect(to.searchParams.has('nonce')).toBe(false);
  });

  it('after the login the browser holds the tokens themselves, encrypted, in five cookies of over 2 KB; the upstream gets two of them as well', async () => {
    const start = await get(`${front}/orders`, jar);
    jar = cookieJar(jar, start.headers.getSetCookie());
    const form = await fetch(start.headers.get('location')!, { redirect: 'manual' });
    const html = await form.text();
    const posted = await fetch(`${issuer}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookieJar('', form.headers.getSetCookie()) },
      body: new URLSearchParams({ csrf: hiddenField(html, 'csrf'), request: hiddenField(html, 'request'), username: 'alice', password: 'alice-password' }),
    });
    const callback = await get(posted.headers.get('location')!, jar);
    expect(callback.status, envoy.output().split('\n').filter((l) => l.includes('Responding with')).join('\n')).toBe(302);
    const set = callback.headers.getSetCookie();
    jar = cookieJar(jar, set);
    for (const line of set) {
      const age = /;\s*max-age=(\d+)/i.exec(line)?.[1];
      if (age !== undefined) maxAge.set(line.split('=')[0]!, Number(age));
    }
    // The login's own cookies (OauthNonce, CodeVerifier) are cleared; the session is these five.
    const names = jar.split('; ').map((c) => c.split('=')[0]).sort();
    expect(names).toEqual(['BearerToken', 'IdToken', 'OauthExpires', 'OauthHMAC', 'RefreshToken']);
    for (const line of set.filter((l) => /^(BearerToken|IdToken|RefreshToken)=[^;]/.test(l))) {
      expect(line).toMatch(/HttpOnly/);
      // No SameSite unless cookie_configs says so.
      expect(line).not.toMatch(/SameSite/i);
    }
    process.stdout.write(`envoy oauth2: Cookie header of ${jar.length} bytes after login (${jar.split('; ').map((c) => `${c.split('=')[0]} ${c.length - c.indexOf('=') - 1}`).join(', ')})\n`);
    expect(jar.length).toBeGreaterThan(2000);

    const api = await get(`${front}/api/orders`, jar, { 'x-requested-with': 'fetch' });
    expect(api.status).toBe(200);
    const saw = upstreamSaw.at(-1)!;
    expect(saw.authorization).toMatch(/^Bearer eyJ/);
    expect((saw.cookie ?? '').split('; ').map((c) => c.split('=')[0]).sort()).toEqual(['BearerToken', 'IdToken']);
  });

  it('at the access token\'s expiry the browser drops BearerToken and the next request is refreshed with the RefreshToken cookie', async () => {
    const before = upstreamSaw.at(-1)!.authorization;
    // BearerToken's Max-Age is the token's lifetime: past it the browser drops every cookie that lived as long.
    expect(maxAge.get('BearerToken')).toBe(ACCESS_TTL_S);
    await new Promise((r) => setTimeout(r, (ACCESS_TTL_S + 1) * 1000));
    const expired = jar
      .split('; ')
      .filter((c) => (maxAge.get(c.split('=')[0]!) ?? Infinity) > ACCESS_TTL_S + 1)
      .join('; ');
    expect(expired).not.toContain('BearerToken=');
    expect(expired).toContain('RefreshToken=');
    const res = await get(`${front}/api/orders`, expired, { 'x-requested-with': 'fetch' });
    expect(res.status).toBe(200);
    expect(upstreamSaw.at(-1)!.authorization).not.toBe(before);
    jar = cookieJar(jar, res.headers.getSetCookie());
  });

  it("logout clears the cookies and sends to the factory's end_session_endpoint, but a copied cookie jar still works afterwards", async () => {
    const out = await get(`${front}/logout`, jar);
    expect(out.status).toBe(302);
    expect(out.headers.get('location')!.startsWith(`${issuer}/logout?id_token_hint=`)).toBe(true);
    expect(out.headers.getSetCookie().map((l) => l.split('=')[0])).toEqual(expect.arrayContaining(['BearerToken', 'IdToken', 'OauthExpires', 'OauthHMAC', 'RefreshToken']));
    // Nothing is kept server-side to revoke: the jar copied before the logout is as good as ever.
    const replay = await get(`${front}/api/orders`, jar, { 'x-requested-with': 'fetch' });
    expect(replay.status).toBe(200);
  });
});
