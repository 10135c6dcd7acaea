import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startProcess, type Started } from '../helpers/process.js';
import { basic, cookieJar, hiddenField, pkce } from './oidc/harness.js';

/**
 * Two real factory processes with OIDC_CONFIG over one PostgreSQL database, as two replicas
 * behind a Service: whatever a browser or a client did on one is known to the other.
 */

let db: TestPostgres;
let dir: string;
let a: Started;
let b: Started;
const KEK = randomBytes(32).toString('base64');
const ISSUER = 'http://factory.test';
const REDIRECT = 'http://localhost:8080/callback';
const SECRET = 'replica-test-secret';
const GUESSED_SECRET = 'guessed-client-secret';
let env: Record<string, string>;

beforeAll(async () => {
  db = await startPostgres();
  dir = await mkdtemp(path.join(tmpdir(), 'oidc-replicas-'));
  const config = path.join(dir, 'oidc.yaml');
  await writeFile(
    config,
    [
      'clients:',
      '  - client_id: gateway',
      `    client_secret: ${SECRET}`,
      `    redirect_uris: [${REDIRECT}]`,
      '    grant_types: [authorization_code, refresh_token, client_credentials]',
      '    response_types: [code]',
      '    token_endpoint_auth_method: client_secret_basic',
      '    scope: openid profile offline_access',
      '    audiences: [serviceb]',
      '  - client_id: guessed-client',
      `    client_secret: ${GUESSED_SECRET}`,
      '    grant_types: [client_credentials]',
      '    audiences: [serviceb]',
      'users:',
      '  - username: alice',
      '    password: alice-password',
      '  - username: carol-replica',
      '    password: carol-password',
      '',
    ].join('\n'),
  );
  env = { PORT: '0', HOST: '127.0.0.1', KEY_STORE: db.url, KEY_ENCRYPTION_KEY: KEK, OIDC_CONFIG: config, OIDC_ALG: 'ES256', ISSUER, PUBLIC_URL: ISSUER };
  // One first, so the provider's key is made once; the second loads it.
  a = await startProcess('jwt-factory/main.ts', { env });
  b = await startProcess('jwt-factory/main.ts', { env });
}, 90_000);
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await db?.remove();
  await rm(dir, { recursive: true, force: true });
}, 30_000);

const at = (p: Started, route: string) => `http://127.0.0.1:${p.port}${route}`;

/** GET /authorize and POST /login on `p` with these credentials, as a browser would: answers the login's response, the cookie jar and the PKCE verifier. */
async function tryLogin(p: Started, username: string, password: string): Promise<{ done: Response; jar: string; verifier: string }> {
  const { verifier, challenge } = pkce();
  const query = new URLSearchParams({ client_id: 'gateway', redirect_uri: REDIRECT, response_type: 'code', scope: 'openid offline_access', state: 's', code_challenge: challenge, code_challenge_method: 'S256' });
  const page = await fetch(at(p, `/authorize?${query}`));
  expect(page.status).toBe(200);
  const html = await page.text();
  const jar = cookieJar('', page.headers.getSetCookie());
  const form = new URLSearchParams({ csrf: hiddenField(html, 'csrf'), request: hiddenField(html, 'request'), username, password });
  const done = await fetch(at(p, '/login'), { method: 'POST', redirect: 'manual', headers: { cookie: jar, 'content-type': 'application/x-www-form-urlencoded' }, body: form });
  return { done, jar: cookieJar(jar, done.headers.getSetCookie()), verifier };
}

/** A successful login of alice on `p`: answers the code, the cookie jar and the verifier. */
async function login(p: Started): Promise<{ code: string; jar: string; verifier: string }> {
  const { done, jar, verifier } = await tryLogin(p, 'alice', 'alice-password');
  expect(done.status).toBe(303);
  const code = new URL(done.headers.get('location')!).searchParams.get('code')!;
  return { code, jar, verifier };
}

const guessedClient = (p: Started, secret: string) =>
  fetch(at(p, '/token'), { method: 'POST', headers: { authorization: basic('guessed-client', secret), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials' }) });

const token = (p: Started, params: Record<string, string>) =>
  fetch(at(p, '/token'), { method: 'POST', headers: { authorization: basic('gateway', SECRET), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params) });

const introspect = async (p: Started, value: string) =>
  ((await (await fetch(at(p, '/introspect'), { method: 'POST', headers: { authorization: basic('gateway', SECRET), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: value }) })).json()) as { active: boolean });

describe('two factory replicas with OIDC over one PostgreSQL database', () => {
  it('a login on A yields a code that B redeems; a replay on A is refused and revokes what B issued', async () => {
    const { code, verifier } = await login(a);
    const redeemed = await token(b, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier });
    expect(redeemed.status).toBe(200);
    const issued = (await redeemed.json()) as { access_token: string; refresh_token: string; id_token: string };
    expect(typeof issued.id_token).toBe('string');
    expect((await introspect(a, issued.access_token)).active).toBe(true);
    const replay = await token(a, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier });
    expect(replay.status).toBe(400);
    expect(((await replay.json()) as { error: string }).error).toBe('invalid_grant');
    // RFC 6749 §4.1.2: the replay revoked the first redemption's tokens, on every replica.
    expect((await introspect(b, issued.access_token)).active).toBe(false);
    expect((await introspect(a, issued.refresh_token)).active).toBe(false);
  });

  it('the session cookie set by A is a session on B: B issues a code without a login form', async () => {
    const { jar } = await login(a);
    const { challenge } = pkce();
    const query = new URLSearchParams({ client_id: 'gateway', redirect_uri: REDIRECT, response_type: 'code', scope: 'openid', code_challenge: challenge, code_challenge_method: 'S256' });
    const sso = await fetch(at(b, `/authorize?${query}`), { redirect: 'manual', headers: { cookie: jar } });
    expect(sso.status).toBe(303);
    expect(new URL(sso.headers.get('location')!).searchParams.get('code')).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('a refresh token rotated on A and presented again on B revokes the whole family', async () => {
    const { code, verifier } = await login(a);
    const first = (await (await token(a, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier })).json()) as { refresh_token: string };
    const rotated = await token(a, { grant_type: 'refresh_token', refresh_token: first.refresh_token });
    expect(rotated.status).toBe(200);
    const second = (await rotated.json()) as { refresh_token: string };
    const reuse = await token(b, { grant_type: 'refresh_token', refresh_token: first.refresh_token });
    expect(reuse.status).toBe(400);
    expect(((await reuse.json()) as { error_description: string }).error_description).toMatch(/already used/);
    // RFC 9700 §4.14.2: the token A handed out last is dead too, on A.
    const after = await token(a, { grant_type: 'refresh_token', refresh_token: second.refresh_token });
    expect(after.status).toBe(400);
    expect(((await after.json()) as { error: string }).error).toBe('invalid_grant');
  });

  it('of one code redeemed on A and B at once, exactly one answers tokens (20 trials)', async () => {
    let wins = 0;
    for (let trial = 0; trial < 20; trial += 1) {
      const { code, verifier } = await login(trial % 2 === 0 ? a : b);
      const answers = await Promise.all([a, b].map((p) => token(p, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier })));
      const statuses = answers.map((r) => r.status).sort();
      expect(statuses).toEqual([200, 400]);
      wins += statuses.filter((s) => s === 200).length;
    }
    expect(wins).toBe(20);
  }, 120_000);

  it('keeps no code, refresh token or session cookie in the database: a dump holds their hashes only', async () => {
    const { code, verifier, jar } = await login(a);
    const { refresh_token: refresh } = (await (await token(b, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier })).json()) as { refresh_token: string };
    const cookie = /jwtf_session=([^;]+)/.exec(jar)![1]!;
    const dump = await db.dump();
    expect(dump).toContain('jf_oidc_codes');
    for (const secret of [code, refresh, cookie, verifier]) expect(dump).not.toContain(secret);
  });

  it('5 failed logins split across A (3) and B (2) lock the user on both, and on a process started afterwards; the database lists no username', async () => {
    for (const p of [a, a, a, b, b]) expect((await tryLogin(p, 'carol-replica', 'wrong-password')).done.status).toBe(401);
    for (const p of [a, b]) {
      const { done: locked } = await tryLogin(p, 'carol-replica', 'carol-password');
      expect(locked.status).toBe(429);
      expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(Number(locked.headers.get('retry-after'))).toBeLessThanOrEqual(30);
    }
    // A restart forgives nothing: a fresh process over the same database refuses her too.
    const c = await startProcess('jwt-factory/main.ts', { env });
    try {
      expect((await tryLogin(c, 'carol-replica', 'carol-password')).done.status).toBe(429);
    } finally {
      await c.stop();
    }
    expect(Number(await db.sql('SELECT count(*) FROM jf_oidc_failures'))).toBeGreaterThan(0);
    const dump = await db.dump();
    expect(dump).toContain('jf_oidc_failures');
    expect(dump).not.toContain('carol-replica');
  }, 60_000);

  it('5 wrong client secrets split across A and B lock the client on both: 401 invalid_client with Retry-After, even for the right secret', async () => {
    for (const p of [b, a, b, a, b]) expect((await guessedClient(p, 'a-guess')).status).toBe(401);
    for (const p of [a, b]) {
      const locked = await guessedClient(p, GUESSED_SECRET);
      expect(locked.status).toBe(401);
      expect(await locked.json()).toMatchObject({ error: 'invalid_client', error_description: expect.stringMatching(/^Too many failed authentications/) });
      expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
    }
    expect(await db.dump()).not.toContain('guessed-client');
  });

  it('WORKERS=2 share the state too: 20 logins and redemptions, each step on whichever worker takes it, all succeed', async () => {
    const workers = await startProcess('jwt-factory/main.ts', {
      env: { PORT: '0', HOST: '127.0.0.1', KEY_STORE: db.url, KEY_ENCRYPTION_KEY: KEK, OIDC_CONFIG: path.join(dir, 'oidc.yaml'), OIDC_ALG: 'ES256', ISSUER, PUBLIC_URL: ISSUER, WORKERS: '2' },
      timeoutMs: 60_000,
    });
    try {
      expect(workers.listening.workers).toBe(2);
      for (let trial = 0; trial < 20; trial += 1) {
        const { code, verifier } = await login(workers);
        const redeemed = await token(workers, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier });
        expect(redeemed.status).toBe(200);
        const { refresh_token } = (await redeemed.json()) as { refresh_token: string };
        expect((await token(workers, { grant_type: 'refresh_token', refresh_token })).status).toBe(200);
      }
    } finally {
      await workers.stop();
    }
  }, 120_000);

  it('while PostgreSQL is down: a login (code redemption and the login form) answers 503 temporarily_unavailable, never a 500; signing and the JWKS go on; readiness names the database and comes back', async () => {
    const { code, verifier, jar } = await login(a);
    await db.stop();
    try {
      const redeem = await token(b, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier });
      expect(redeem.status).toBe(503);
      expect(redeem.headers.get('retry-after')).toBe('2');
      expect(await redeem.json()).toMatchObject({ error: 'temporarily_unavailable' });
      const { challenge } = pkce();
      const query = new URLSearchParams({ client_id: 'gateway', redirect_uri: REDIRECT, response_type: 'code', scope: 'openid', code_challenge: challenge, code_challenge_method: 'S256' });
      const page = await fetch(at(a, `/authorize?${query}`), { redirect: 'manual', headers: { cookie: jar } });
      expect(page.status).toBe(503);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      // The login form checks no password without its failure counters: 503 as a page, never a 500, never failing open.
      const { done: refused } = await tryLogin(a, 'alice', 'alice-password');
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('2');
      expect(refused.headers.get('content-type')).toMatch(/^text\/html/);
      expect(refused.headers.get('location')).toBeNull();
      // client_credentials needs no stored state: it signs with the key in memory, and a
      // client's failures are counted in the process meanwhile (a wrong secret is still 401).
      expect((await token(a, { grant_type: 'client_credentials' })).status).toBe(200);
      expect((await guessedClient(b, 'outage-guess')).status).toBe(401);
      expect((await fetch(at(b, '/.well-known/jwks.json'))).status).toBe(200);
      const ready = await fetch(at(a, '/readyz'));
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { missing: string[] }).missing).toEqual(expect.arrayContaining(['OIDC database']));
    } finally {
      await db.start();
    }
    const deadline = Date.now() + 20_000;
    for (const p of [a, b]) {
      while ((await fetch(at(p, '/readyz'))).status !== 200) {
        if (Date.now() > deadline) throw new Error('not ready again within 20 s');
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const again = await login(a);
    expect((await token(b, { grant_type: 'authorization_code', code: again.code, redirect_uri: REDIRECT, code_verifier: again.verifier })).status).toBe(200);
  }, 60_000);
});
