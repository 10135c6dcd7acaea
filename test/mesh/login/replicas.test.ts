import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ResponseBodyError } from 'openid-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { silentLogger } from '../../../lib/logger.js';
import { createLogin, type LoginOptions } from '../../../mesh/login/handler.js';
import type { IssuedTokens, OidcClient } from '../../../mesh/login/oidc.js';
import { createPostgresSessionStore, type PostgresSessionStore } from '../../../mesh/login/store-postgres.js';
import type { SessionStore } from '../../../mesh/login/store.js';
import { startPostgres, type TestPostgres } from '../../helpers/postgres.js';
import { freePort, startProcess, type Started } from '../../helpers/process.js';
import { apiCall, loginThrough } from './gateway-login.js';
import { bearerUpstream, send, serverPool } from './send.js';

/**
 * Gateway replicas sharing one PostgreSQL session store refresh each session once, however many
 * of them want to at the same moment: the provider's refresh-token reuse detection (RFC 9700
 * §4.14.2) never fires, and no session ends. First two login hooks on two pools in this process
 * with a stand-in provider as strict as the factory (a refresh token works once; a second use
 * revokes its family) and a fixed clock; then two real mesh-gateway processes and the real factory.
 */

let db: TestPostgres;
const stores: PostgresSessionStore[] = [];
const KEY = randomBytes(32);
const T0 = Date.UTC(2026, 0, 1);
let t = T0;

beforeAll(async () => {
  db = await startPostgres();
}, 60_000);
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await db?.remove();
}, 30_000);

/** Resolves once `condition` holds (polled; the test's own timeout bounds it). */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setTimeout(r, 10));
}

/** A provider like the factory: each refresh token works once; presenting a used one revokes its family. */
function strictProvider() {
  const tokens = new Map<string, { family: string; used: boolean }>();
  const revoked = new Set<string>();
  const presented: string[] = [];
  let serial = 0;
  let gate: Promise<void> | undefined;
  const refusal = () => new ResponseBodyError('refused', { cause: { error: 'invalid_grant' }, response: new Response('{}', { status: 400 }) });
  const issue = (family: string) => {
    serial += 1;
    const refreshToken = `rt-${family}-${serial}`;
    tokens.set(refreshToken, { family, used: false });
    return { accessToken: `at-${family}-${serial}`, refreshToken };
  };
  const oidc: OidcClient = {
    startLogin: async () => ({ url: new URL('https://op.example/authorize'), state: 's', nonce: 'n', codeVerifier: 'v' }),
    finishLogin: async () => {
      throw new Error('not used here');
    },
    async refresh(refreshToken): Promise<IssuedTokens> {
      presented.push(refreshToken);
      await gate;
      const known = tokens.get(refreshToken);
      if (!known || revoked.has(known.family)) throw refusal();
      if (known.used) {
        revoked.add(known.family);
        throw refusal();
      }
      known.used = true;
      return { ...issue(known.family), expiresIn: 300 };
    },
    endSessionUrl: async () => undefined,
  };
  return {
    oidc,
    issue,
    revoked,
    presented,
    /** Holds every refresh until the returned function is called. */
    hold(): () => void {
      let open!: () => void;
      gate = new Promise<void>((r) => (open = r));
      return () => {
        gate = undefined;
        open();
      };
    },
  };
}

const OPTIONS: LoginOptions = {
  publicUrl: new URL('https://webui.example'),
  cookieName: '__Host-mesh-session',
  sessionLifetimeMs: 8 * 3600_000,
  sessionIdleMs: 3600_000,
  callbackPath: '/callback',
  logoutPath: '/logout',
  apiPrefixes: ['/api/'],
  claimHeaders: [],
  refreshAheadMs: 30_000,
  refreshLeaseMs: 15_000,
  refreshWaitMs: 1000,
};

describe('two login hooks on two pools over one session store', () => {
  const provider = strictProvider();
  const pool = serverPool();
  /** The ports of replicas A and B. */
  const replicas: number[] = [];
  let a: PostgresSessionStore;

  const serve = async (store: SessionStore): Promise<number> => {
    const hook = createLogin({ options: OPTIONS, oidc: provider.oidc, store, now: () => t, logger: silentLogger() });
    return pool.serve(
      http.createServer(async (req, res) => {
        const headers: Record<string, string[]> = {};
        for (const [k, v] of Object.entries(req.headersDistinct)) if (v) headers[k] = v;
        const forwarded = await hook.handle(req, res, headers);
        if (forwarded) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(forwarded));
        }
      }),
    );
  };
  const newStore = () => {
    const s = createPostgresSessionStore({ url: db.url, key: KEY, now: () => t, logger: silentLogger(), connectTimeoutMs: 5000 });
    stores.push(s);
    return s;
  };

  beforeAll(async () => {
    a = newStore();
    replicas.push(await serve(a), await serve(newStore()));
  });
  afterAll(() => pool.closeAll());
  beforeEach(() => {
    t = T0;
    provider.presented.length = 0;
  });

  /** A session whose access token is due for a refresh (within 30 s of expiry); answers its cookie and key. */
  async function dueSession(store: SessionStore = a) {
    const id = randomBytes(32).toString('base64url');
    const key = createHash('sha256').update(id).digest('base64url');
    const family = randomBytes(6).toString('hex');
    const { accessToken, refreshToken } = provider.issue(family);
    await store.set(key, { kind: 'session', sub: 'alice', createdAt: t, lastSeenAt: t, expiresAt: t + OPTIONS.sessionIdleMs, tokens: { accessToken, idToken: 'id', refreshToken, accessExpiresAt: t + 10_000 }, idClaims: { sub: 'alice' } });
    return { cookie: `__Host-mesh-session=${id}`, key, family, accessToken };
  }
  const call = (port: number, cookie: string) => send(`http://127.0.0.1:${port}/api/x`, { headers: { accept: 'application/json', cookie } });
  const bearer = (answer: { status: number; body: string }) => (answer.status === 200 ? (JSON.parse(answer.body) as { authorization: string[] }).authorization[0] : `status ${answer.status}`);

  /** Three requests of every session through each replica at once, the provider held until `presentedBefore` refreshes reached it. */
  async function wave(cookies: string[], presentedBefore: number) {
    const release = provider.hold();
    const answers = Promise.all(cookies.map((cookie) => Promise.all(replicas.flatMap((port) => [call(port, cookie), call(port, cookie), call(port, cookie)]))));
    await until(() => provider.presented.length >= presentedBefore);
    release();
    return answers;
  }

  it('40 sessions, each refreshed at once through both replicas: one refresh per session per expiry, no family revoked, 40 of 40 sessions alive', async () => {
    const sessions = await Promise.all(Array.from({ length: 40 }, () => dueSession()));
    const cookies = sessions.map((s) => s.cookie);
    for (const round of [1, 2]) {
      const answers = await wave(cookies, sessions.length);
      // Every request of a session carried the one new token.
      for (const [i, perSession] of answers.entries()) {
        const tokens = new Set(perSession.map(bearer));
        expect(tokens.size, `session ${i}, round ${round}`).toBe(1);
        expect([...tokens][0]).toMatch(new RegExp(`^Bearer at-${sessions[i]!.family}-`));
      }
      expect(provider.presented).toHaveLength(sessions.length * round);
      expect(new Set(provider.presented).size).toBe(provider.presented.length);
      // The next expiry: the refreshed tokens (300 s) are due again.
      t += 280_000;
    }
    expect(sessions.filter((s) => provider.revoked.has(s.family))).toEqual([]);
  }, 60_000);

  it('the same race without the lease (each replica alone) presents refresh tokens twice, and the provider revokes those families', async () => {
    // Both replicas' stores, stripped of their leases: the behaviour before them.
    const bare = (s: PostgresSessionStore): SessionStore => ({ get: s.get, set: s.set, delete: s.delete, touch: s.touch });
    const ports = [await serve(bare(a)), await serve(bare(newStore()))];
    const sessions = await Promise.all(Array.from({ length: 5 }, () => dueSession()));
    const release = provider.hold();
    const answers = Promise.all(sessions.map((s) => Promise.all(ports.map((port) => call(port, s.cookie)))));
    // Held at the provider, so neither replica can have written new tokens: both present the old ones.
    await until(() => provider.presented.length >= 2 * sessions.length);
    release();
    // The second use ends the session (the first may still answer 200 with tokens now revoked).
    for (const pair of await answers) expect(pair.map((r) => r.status)).toContain(401);
    expect(sessions.every((s) => provider.revoked.has(s.family))).toBe(true);
  });

  it('a lease held by a replica that died: requests wait, then use the still-valid token or answer 503, and never ask the provider; once the lease runs out the next request refreshes', async () => {
    const s = await dueSession();
    const dead = await a.refreshLocks.claim(s.key, OPTIONS.refreshLeaseMs!);
    expect(dead?.lease).toBeDefined();
    const waited = await call(replicas[1]!, s.cookie);
    expect(bearer(waited)).toBe(`Bearer ${s.accessToken}`);
    // The token expired meanwhile (the lease has 4 s to go): nothing valid to forward.
    t += 11_000;
    const expired = await call(replicas[1]!, s.cookie);
    expect(expired.status).toBe(503);
    expect(expired.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(JSON.parse(expired.body).error.code).toBe('issuer_unavailable');
    expect(provider.presented).toEqual([]);
    t += 4_000;
    const after = await call(replicas[1]!, s.cookie);
    expect(bearer(after)).toMatch(new RegExp(`^Bearer at-${s.family}-`));
    expect(bearer(after)).not.toBe(`Bearer ${s.accessToken}`);
    expect(provider.presented).toHaveLength(1);
  });

  it('a logout through B while A refreshes wins: the refreshed tokens are not written back, the session is gone on both', async () => {
    const s = await dueSession();
    const release = provider.hold();
    const during = call(replicas[0]!, s.cookie);
    await until(() => provider.presented.length === 1);
    const logout = await send(`http://127.0.0.1:${replicas[1]}/logout`, { headers: { cookie: s.cookie } });
    expect(logout.status).toBe(303);
    release();
    const answer = await during;
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body).error.code).toBe('session_expired');
    expect(await a.get(s.key)).toBeUndefined();
    for (const port of replicas) expect((await call(port, s.cookie)).status).toBe(401);
  });
});

describe('two mesh-gateway processes and the factory over one session store', () => {
  /** Sessions logged in, each then refreshed through both gateways at once. */
  const SESSIONS = 8;
  /** The factory's access-token lifetime for the gateway, and how far ahead the gateways refresh. */
  const ACCESS_TTL_S = 16;
  const REFRESH_AHEAD_S = 8;
  const SECRET = 'gateway-refresh-secret';
  const processes: Started[] = [];
  const servers = serverPool();
  let dir: string;
  let issuer: string;
  /** Every refresh_token grant that reached the factory: the token's hash and the factory's status. */
  const grants: Array<{ token: string; status: number }> = [];
  let gateways: Started[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'gateway-refresh-'));
    const factoryPort = await freePort();
    const proxyPort = await freePort();
    // The factory's public URL is a recording proxy in front of it: discovery sends the gateways'
    // token calls through it, so the test sees every refresh the factory answered.
    issuer = `http://127.0.0.1:${proxyPort}`;
    const publicUrl = `http://127.0.0.1:${await freePort()}`;
    await writeFile(
      path.join(dir, 'oidc.yaml'),
      stringify({
        clients: [
          {
            client_id: 'gw',
            client_secret: SECRET,
            redirect_uris: [`${publicUrl}/callback`],
            post_logout_redirect_uris: [`${publicUrl}/`],
            grant_types: ['authorization_code', 'refresh_token'],
            token_endpoint_auth_method: 'client_secret_basic',
            scope: 'openid profile email offline_access',
            audiences: ['serviceb'],
            access_token_lifetime: ACCESS_TTL_S,
          },
        ],
        users: [{ username: 'alice', password: 'alice-password' }],
      }),
    );
    processes.push(
      await startProcess('jwt-factory/main.ts', {
        env: { PORT: String(factoryPort), HOST: '127.0.0.1', KEYS_DIR: path.join(dir, 'keys'), OIDC_CONFIG: path.join(dir, 'oidc.yaml'), OIDC_ALG: 'ES256', ISSUER: issuer, PUBLIC_URL: issuer },
        timeoutMs: 60_000,
      }),
    );
    await servers.serve(
      http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks);
          const form = req.url === '/token' ? new URLSearchParams(body.toString()) : undefined;
          const up = http.request({ host: '127.0.0.1', port: factoryPort, method: req.method, path: req.url, headers: req.headers }, (answer) => {
            if (form?.get('grant_type') === 'refresh_token') grants.push({ token: createHash('sha256').update(form.get('refresh_token') ?? '').digest('hex'), status: answer.statusCode ?? 0 });
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          });
          up.on('error', () => res.destroy());
          up.end(body);
        });
      }),
      proxyPort,
    );
    const backend = await servers.serve(
      http.createServer(bearerUpstream(issuer)),
    );
    const args = ['--policies', dir, '--upstream', `http://127.0.0.1:${backend}`, '--port', '0', '--login-issuer', issuer, '--login-client-id', 'gw', '--public-url', publicUrl, '--login-refresh-ahead', String(REFRESH_AHEAD_S)];
    const env = { LOGIN_CLIENT_SECRET: SECRET, SESSION_STORE: db.url, SESSION_ENCRYPTION_KEY: KEY.toString('base64') };
    gateways = await Promise.all([startProcess('mesh/gateway-main.ts', { args, env }), startProcess('mesh/gateway-main.ts', { args, env })]);
    processes.push(...gateways);
  }, 90_000);
  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await servers.closeAll();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 30_000);

  it(`${SESSIONS} sessions refreshed at once through both gateways, twice: the factory answered one refresh per session per expiry, each refresh token presented once, every session alive`, async () => {
    const cookies: string[] = [];
    for (let i = 0; i < SESSIONS; i += 1) cookies.push(await loginThrough(gateways[i % 2]!.port, issuer));
    let issuedBy = Date.now();
    for (const round of [1, 2]) {
      // Every session's access token is within the refresh-ahead window now (and none refreshed yet).
      await new Promise((r) => setTimeout(r, Math.max(0, issuedBy + (ACCESS_TTL_S - REFRESH_AHEAD_S) * 1000 + 500 - Date.now())));
      const answers = await Promise.all(cookies.flatMap((cookie) => gateways.flatMap((g) => [apiCall(g.port, cookie), apiCall(g.port, cookie)])));
      issuedBy = Date.now();
      expect(answers.map((r) => r.status)).toEqual(Array(SESSIONS * 4).fill(200));
      expect(grants).toHaveLength(SESSIONS * round);
    }
    expect(grants.every((g) => g.status === 200)).toBe(true);
    expect(new Set(grants.map((g) => g.token)).size).toBe(grants.length);
    for (const cookie of cookies) for (const g of gateways) expect((await apiCall(g.port, cookie)).status).toBe(200);
    const logs = gateways.map((g) => g.output()).join('');
    expect(logs).not.toContain('refresh refused');
  }, 120_000);
});
