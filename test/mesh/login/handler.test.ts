import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ResponseBodyError } from 'openid-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../lib/logger.js';
import { createLogin, type LoginEvent, type LoginOptions } from '../../../mesh/login/handler.js';
import type { IssuedTokens, OidcClient } from '../../../mesh/login/oidc.js';
import { createMemorySessionStore, type SessionRecord } from '../../../mesh/login/store.js';
import { send as sendTo } from './send.js';

/**
 * The login hook's decisions with a stand-in provider and a fixed clock: what ends a session,
 * when a refresh runs, what a failing provider costs, the callback's refusals. The real
 * provider and browser are in browser.test.ts.
 */

const T0 = Date.UTC(2026, 0, 1);
let t = T0;
const store = createMemorySessionStore({ now: () => t, maxEntries: 100 });
const calls: string[] = [];
/** What the hook told its metrics, as `event:outcome`. */
const events: string[] = [];
let refreshWith: () => Promise<IssuedTokens>;
let finishWith: () => Promise<IssuedTokens>;
let endSession: URL | undefined;

const oidc: OidcClient = {
  startLogin: async () => ({ url: new URL('https://op.example/authorize?x=1'), state: 'st', nonce: 'no', codeVerifier: 'cv' }),
  finishLogin: async () => {
    calls.push('finish');
    return finishWith();
  },
  refresh: async () => {
    calls.push('refresh');
    return refreshWith();
  },
  endSessionUrl: async () => endSession,
};

const OPTIONS: LoginOptions = {
  publicUrl: new URL('https://webui.example'),
  cookieName: '__Host-mesh-session',
  sessionLifetimeMs: 3600_000,
  sessionIdleMs: 600_000,
  callbackPath: '/callback',
  logoutPath: '/logout',
  apiPrefixes: ['/api/'],
  claimHeaders: [{ claim: 'name', header: 'x-user-name' }],
  refreshAheadMs: 30_000,
};

let port: number;
let server: http.Server;
/** What the hook handed on (the headers the rules and the upstream would see). */
let forwarded: Record<string, string[]> | undefined;

const send = (path: string, headers: Record<string, string> = {}, method = 'GET') => sendTo(`http://127.0.0.1:${port}${path}`, { headers, method });

/** Stores a session directly and returns its cookie header. */
async function session(overrides: Partial<SessionRecord['tokens']> = {}, id = randomBytes(32).toString('base64url')): Promise<string> {
  await store.set(createHash('sha256').update(id).digest('base64url'), {
    kind: 'session',
    sub: 'alice',
    createdAt: t,
    lastSeenAt: t,
    expiresAt: t + OPTIONS.sessionIdleMs,
    tokens: { accessToken: 'at-1', idToken: 'id-1', refreshToken: 'rt-1', accessExpiresAt: t + 300_000, ...overrides },
    idClaims: { sub: 'alice', name: 'Zoë Alice' },
  });
  return `__Host-mesh-session=${id}`;
}

beforeAll(async () => {
  const hook = createLogin({ options: OPTIONS, oidc, store, now: () => t, logger: silentLogger(), onEvent: (e: LoginEvent) => events.push(`${e.event}:${e.outcome}`) });
  server = http.createServer(async (req, res) => {
    const headers: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(req.headersDistinct)) if (v) headers[k] = v;
    forwarded = await hook.handle(req, res, headers);
    if (forwarded) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(forwarded));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  t = T0;
  calls.length = 0;
  events.length = 0;
  forwarded = undefined;
  refreshWith = async () => ({ accessToken: 'at-2', refreshToken: 'rt-2', expiresIn: 300 });
  finishWith = async () => ({ accessToken: 'at-1', idToken: 'id-1', expiresIn: 300, idClaims: { sub: 'alice' } });
  endSession = undefined;
});

const json = { accept: 'application/json' };

/** The next refresh waits until the returned function is called, then issues at-2. */
function gatedRefresh(): () => void {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  refreshWith = async () => {
    await gate;
    return { accessToken: 'at-2', expiresIn: 300 };
  };
  return release;
}

describe('the login hook', () => {
  it('forwards with the access token and claims; non-ASCII claim bytes are percent-encoded', async () => {
    const cookie = await session();
    const res = await send('/api/x', { ...json, cookie, authorization: 'Bearer forged', 'x-user-name': 'Mallory' });
    expect(res.status).toBe(200);
    expect(forwarded).toMatchObject({ authorization: ['Bearer at-1'], 'x-user-name': ['Zo%C3%AB Alice'] });
    expect(forwarded!.cookie).toBeUndefined();
    expect(calls).toEqual([]);
  });

  it('refreshes 30 s ahead of expiry, not before', async () => {
    const cookie = await session();
    t = T0 + 270_000 - 1;
    await send('/api/x', { ...json, cookie });
    expect(calls).toEqual([]);
    t = T0 + 270_000;
    await send('/api/x', { ...json, cookie });
    expect(calls).toEqual(['refresh']);
    expect(forwarded!.authorization).toEqual(['Bearer at-2']);
    expect(events).toEqual(['refresh:ok']);
  });

  it('concurrent requests of one session share one refresh', async () => {
    const cookie = await session();
    t = T0 + 290_000;
    const release = gatedRefresh();
    const all = Promise.all(Array.from({ length: 4 }, () => send('/api/x', { ...json, cookie })));
    await new Promise((r) => setTimeout(r, 50));
    release();
    const answers = await all;
    expect(answers.map((a) => JSON.parse(a.body).authorization)).toEqual(Array(4).fill(['Bearer at-2']));
    expect(calls).toEqual(['refresh']);
  });

  it('a logout while a refresh runs stays a logout: the refreshed tokens are not written back', async () => {
    const cookie = await session();
    t = T0 + 290_000;
    const release = gatedRefresh();
    const during = send('/api/x', { ...json, cookie });
    await new Promise((r) => setTimeout(r, 50));
    expect((await send('/logout', { cookie })).status).toBe(303);
    release();
    expect((await during).status).toBe(401);
    expect((await send('/api/x', { ...json, cookie })).status).toBe(401);
  });

  it('a refresh the provider refuses ends the session: 401 session_expired for an API call, a new login for a page', async () => {
    refreshWith = async () => {
      throw new ResponseBodyError('refused', { cause: { error: 'invalid_grant' }, response: new Response('{}', { status: 400 }) });
    };
    const cookie = await session();
    t = T0 + 300_000;
    const api = await send('/api/x', { ...json, cookie });
    expect(api.status).toBe(401);
    expect(api.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(JSON.parse(api.body).error.code).toBe('session_expired');
    expect(api.headers['set-cookie']).toEqual(['__Host-mesh-session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure']);
    const page = await send('/', { accept: 'text/html', cookie });
    expect(page.status).toBe(302);
    expect(page.headers.location).toBe('https://op.example/authorize?x=1');
    expect(events).toEqual(['refresh:refused', 'refused:session_expired', 'login:started']);
  });

  it('a provider that cannot be reached: the token still valid is used, an expired one is never passed (503)', async () => {
    refreshWith = async () => {
      throw new TypeError('fetch failed');
    };
    const cookie = await session();
    t = T0 + 290_000;
    expect((await send('/api/x', { ...json, cookie })).status).toBe(200);
    expect(forwarded!.authorization).toEqual(['Bearer at-1']);
    t = T0 + 300_000;
    const res = await send('/api/x', { ...json, cookie });
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body).error.code).toBe('issuer_unavailable');
    expect(events).toEqual(['refresh:unavailable', 'refresh:unavailable', 'refused:issuer_unavailable']);
  });

  it('without a refresh token the session ends when the access token expires', async () => {
    const cookie = await session({ refreshToken: undefined });
    t = T0 + 299_999;
    expect((await send('/api/x', { ...json, cookie })).status).toBe(200);
    t = T0 + 300_000;
    const res = await send('/api/x', { ...json, cookie });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).error.code).toBe('session_expired');
  });

  it('a session unused for the idle timeout ends; one in use lives on', async () => {
    const idle = await session({ accessExpiresAt: T0 + 3600_000 });
    const busy = await session({ accessExpiresAt: T0 + 3600_000 });
    for (let i = 1; i <= 4; i += 1) {
      t = T0 + i * 300_000 - 1;
      expect((await send('/api/x', { ...json, cookie: busy })).status).toBe(200);
    }
    expect((await send('/api/x', { ...json, cookie: idle })).status).toBe(401);
  });

  it('a state-changing request needs this origin or X-Requested-With: 403 csrf_refused otherwise', async () => {
    const cookie = await session();
    for (const headers of [{ origin: 'https://evil.example' }, {}, { origin: 'null' }] as Record<string, string>[]) {
      const res = await send('/api/x', { cookie, ...headers }, 'POST');
      expect(res.status).toBe(403);
      expect(JSON.parse(res.body).error.code).toBe('csrf_refused');
    }
    expect((await send('/api/x', { cookie, origin: 'https://webui.example' }, 'POST')).status).toBe(200);
    expect((await send('/api/x', { cookie, 'x-requested-with': 'fetch' }, 'DELETE')).status).toBe(200);
    expect(events).toEqual(Array(3).fill('refused:csrf_refused'));
  });

  it('the callback without a login under way answers 400 login_state_missing; not GET is 405', async () => {
    const res = await send('/callback?code=c&state=st', { cookie: '__Host-mesh-session-login=' + 'B'.repeat(43) });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(JSON.parse(res.body).error.code).toBe('login_state_missing');
    const post = await send('/callback', {}, 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET');
    expect(calls).toEqual([]);
  });

  it('a callback the provider refuses answers 401 login_failed; the login record serves one callback only', async () => {
    const start = await send('/', { accept: 'text/html' });
    const loginCookie = start.headers['set-cookie']![0]!.split(';')[0]!;
    finishWith = async () => {
      throw new ResponseBodyError('refused', { cause: { error: 'invalid_grant' }, response: new Response('{}', { status: 400 }) });
    };
    const res = await send('/callback?code=c&state=st', { cookie: loginCookie });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).error).toEqual({ code: 'login_failed', message: 'The login did not complete (invalid_grant)' });
    const again = await send('/callback?code=c&state=st', { cookie: loginCookie });
    expect(JSON.parse(again.body).error.code).toBe('login_state_missing');
    expect(events).toEqual(['login:started', 'login:refused', 'refused:login_state_missing']);
  });

  it('after login the browser returns to the page it asked for, and only to a local path', async () => {
    for (const [asked, back] of [
      ['/reports?year=2026', '/reports?year=2026'],
      ['//evil.example/x', '/'],
      ['/\\evil.example', '/'],
    ] as const) {
      const start = await send(asked, { accept: 'text/html' });
      const loginCookie = start.headers['set-cookie']![0]!.split(';')[0]!;
      const res = await send('/callback?code=c&state=st', { cookie: loginCookie });
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.body).toContain(`content="0;url=${back}"`);
      expect(res.headers['set-cookie']![0]).toMatch(/^__Host-mesh-session=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure$/);
    }
    expect(events).toEqual(Array(3).fill(['login:started', 'login:ok']).flat());
  });

  it('logout deletes the session and sends the browser to the provider\'s end_session_endpoint', async () => {
    endSession = new URL('https://op.example/session/end?id_token_hint=id-1');
    const cookie = await session();
    const res = await send('/logout', { cookie });
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe(endSession.href);
    expect((await send('/api/x', { ...json, cookie })).status).toBe(401);
    expect((await send('/logout', { cookie, origin: 'https://evil.example' }, 'POST')).status).toBe(403);
    expect((await send('/logout', {})).status).toBe(303);
    expect(events).toEqual(['logout:ok', 'refused:login_required', 'refused:csrf_refused', 'logout:no_session']);
  });
});
