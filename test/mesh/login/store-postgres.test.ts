import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../lib/logger.js';
import { parseLogin } from '../../../mesh/login/args.js';
import { createPostgresSessionStore, type PostgresSessionStore } from '../../../mesh/login/store-postgres.js';
import type { SessionRecord } from '../../../mesh/login/store.js';
import { startPostgres, type TestPostgres } from '../../helpers/postgres.js';
import { freePort, startProcess, type Started } from '../../helpers/process.js';
import { apiCall, loginThrough } from './gateway-login.js';
import { bearerUpstream } from './send.js';

let db: TestPostgres;
let dir: string;
const stores: PostgresSessionStore[] = [];
const processes: Started[] = [];
const KEY = randomBytes(32);

beforeAll(async () => {
  db = await startPostgres();
  dir = await mkdtemp(path.join(tmpdir(), 'gateway-sessions-'));
}, 60_000);
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await Promise.all(processes.map((p) => p.stop()));
  await db?.remove();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 30_000);

function store(now: () => number, key = KEY, maxEntries?: number): PostgresSessionStore {
  const s = createPostgresSessionStore({ url: db.url, key, now, logger: silentLogger(), connectTimeoutMs: 1000, maxEntries });
  stores.push(s);
  return s;
}

const session = (expiresAt: number): SessionRecord => ({
  kind: 'session',
  sub: 'alice',
  createdAt: 0,
  lastSeenAt: 0,
  expiresAt,
  tokens: { accessToken: `at-${randomBytes(16).toString('hex')}`, idToken: `it-${randomBytes(16).toString('hex')}`, refreshToken: `rt-${randomBytes(16).toString('hex')}`, accessExpiresAt: expiresAt },
  idClaims: { sub: 'alice', name: 'Alice' },
});
const keyOf = () => randomBytes(32).toString('base64url');

describe('the PostgreSQL session store of the gateway', () => {
  it('keeps a record until its expiresAt, to the millisecond, and forgets a deleted one; two stores see the same rows', async () => {
    let t = 1_000_000;
    const a = store(() => t);
    const b = store(() => t);
    const key = keyOf();
    const record = session(2_000_000);
    await a.set(key, record);
    expect(await b.get(key)).toEqual(record);
    t = 1_999_999;
    expect(await b.get(key)).toEqual(record);
    t = 2_000_000;
    expect(await a.get(key)).toBeUndefined();
    const other = keyOf();
    await a.set(other, { kind: 'login', state: 's', nonce: 'n', codeVerifier: 'v', returnTo: '/', expiresAt: 3_000_000 });
    expect(await b.get(other)).toMatchObject({ kind: 'login', state: 's' });
    await b.delete(other);
    expect(await a.get(other)).toBeUndefined();
  });

  it('runs its migrations once when several gateways start together', async () => {
    const many = [store(Date.now), store(Date.now), store(Date.now)];
    await Promise.all(many.map((s) => s.get(keyOf())));
    expect(await db.sql('SELECT string_agg(version::text, \',\' ORDER BY version) FROM mesh_gateway_migrations')).toBe('1,2');
  });

  it('seals what it stores: a dump holds no token, and a row moved under another key or read with another encryption key does not open', async () => {
    const a = store(() => 0);
    const key = keyOf();
    const record = session(10_000);
    await a.set(key, record);
    const dump = await db.dump();
    for (const secret of [record.tokens.accessToken, record.tokens.idToken, record.tokens.refreshToken!, 'Alice']) expect(dump).not.toContain(secret);
    expect(dump).toContain('mgs1.');
    const thief = keyOf();
    await db.sql(`INSERT INTO mesh_gateway_sessions SELECT '${thief}', kind, sealed, expires_at FROM mesh_gateway_sessions WHERE key = '${key}'`);
    expect(await a.get(thief)).toBeUndefined();
    expect(await store(() => 0, randomBytes(32)).get(key)).toBeUndefined();
  });

  it('sweeps expired rows', async () => {
    let t = 0;
    const a = store(() => t);
    const dead = keyOf();
    await a.set(dead, session(100));
    t = 100;
    expect(await a.sweep()).toBeGreaterThanOrEqual(1);
    expect(await db.sql(`SELECT count(*) FROM mesh_gateway_sessions WHERE key = '${dead}'`)).toBe('0');
  });

  it('keeps at most maxEntries of each kind: a flood of logins under way pushes out older logins, never a session; past the cap the least recently used session goes', async () => {
    await db.sql('DELETE FROM mesh_gateway_sessions');
    const a = store(() => 0, KEY, 3);
    const b = store(() => 0, KEY, 3);
    const sessions = [keyOf(), keyOf(), keyOf()];
    for (const key of sessions) await a.set(key, session(10_000));
    const logins = Array.from({ length: 40 }, keyOf);
    // Two replicas taking the flood at once.
    await Promise.all(logins.map((key, i) => (i % 2 ? a : b).set(key, { kind: 'login', state: 's', nonce: 'n', codeVerifier: 'v', returnTo: '/', expiresAt: 10_000 })));
    expect(await db.sql("SELECT count(*) FROM mesh_gateway_sessions WHERE kind = 'login'")).toBe('3');
    for (const key of sessions) expect(await b.get(key)).toMatchObject({ kind: 'session' });
    // The first session was used since: the second, least recently used, goes for a new one.
    await b.touch(sessions[0]!, 5, 10_000);
    const newest = keyOf();
    await a.set(newest, session(10_000));
    expect(await a.get(sessions[1]!)).toBeUndefined();
    for (const key of [sessions[0]!, sessions[2]!, newest]) expect(await a.get(key)).toMatchObject({ kind: 'session' });
  });

  it('a touch writes last use and expiry only: it keeps tokens another replica refreshed, and brings back no session a logout deleted', async () => {
    const a = store(() => 0);
    const b = store(() => 0);
    const key = keyOf();
    const record = session(10_000);
    await a.set(key, record);
    const lease = (await a.refreshLocks.claim(key, 1000))!.lease!;
    const refreshed = { ...record, tokens: { ...record.tokens, accessToken: 'at-new', refreshToken: 'rt-new' } };
    expect(await a.refreshLocks.commit(key, lease, refreshed)).toBe(true);
    await b.touch(key, 7, 20_000);
    expect(await a.get(key)).toEqual({ ...refreshed, lastSeenAt: 7, expiresAt: 20_000 });
    await a.delete(key);
    await b.touch(key, 8, 30_000);
    expect(await b.get(key)).toBeUndefined();
  });

  it('a refresh lease: one claim of many wins, the others read the session; the commit writes the tokens and ends the lease; a lease runs out by itself', async () => {
    let t = 1000;
    const a = store(() => t);
    const b = store(() => t);
    const key = keyOf();
    const record = session(100_000);
    await a.set(key, record);
    const claims = await Promise.all([a, b, a, b].map((s) => s.refreshLocks.claim(key, 15_000)));
    expect(claims.filter((c) => c?.lease)).toHaveLength(1);
    for (const c of claims) expect(c?.record).toEqual(record);
    const won = claims.find((c) => c?.lease)!.lease!;
    // Held: no other claim until it ends or runs out, to the millisecond.
    t = 15_999;
    expect((await b.refreshLocks.claim(key, 15_000))?.lease).toBeUndefined();
    t = 16_000;
    const late = (await b.refreshLocks.claim(key, 15_000))!.lease!;
    expect(late).toBeDefined();
    // The first holder's lease was taken over: its commit writes nothing.
    expect(await a.refreshLocks.commit(key, won, { ...record, tokens: { ...record.tokens, accessToken: 'at-stale' } })).toBe(false);
    expect((await a.get(key)) as SessionRecord).toMatchObject({ tokens: { accessToken: record.tokens.accessToken } });
    await b.refreshLocks.release(key, late);
    const again = (await a.refreshLocks.claim(key, 15_000))!;
    expect(again.lease).toBeDefined();
    const next = { ...record, tokens: { ...record.tokens, accessToken: 'at-2' } };
    expect(await a.refreshLocks.commit(key, again.lease!, next)).toBe(true);
    const held = (await b.refreshLocks.claim(key, 15_000))!;
    expect(held).toMatchObject({ record: next, lease: expect.any(String) });
    // A logout while a lease is held: the commit fails, nothing comes back, and there is no session to claim.
    await a.delete(key);
    expect(await b.refreshLocks.commit(key, held.lease!, next)).toBe(false);
    expect(await a.get(key)).toBeUndefined();
    expect(await a.refreshLocks.claim(key, 15_000)).toBeUndefined();
  });

  it('SESSION_STORE=postgres:// needs SESSION_ENCRYPTION_KEY, of 32 bytes', () => {
    const values = { 'login-issuer': 'http://127.0.0.1:9', 'login-client-id': 'gw', 'public-url': 'http://127.0.0.1:9' };
    expect(() => parseLogin(values, { LOGIN_CLIENT_SECRET: 's', SESSION_STORE: db.url }, { logger: silentLogger() })).toThrow(/SESSION_ENCRYPTION_KEY must be set/);
    expect(() => parseLogin(values, { LOGIN_CLIENT_SECRET: 's', SESSION_STORE: db.url, SESSION_ENCRYPTION_KEY: randomBytes(16).toString('base64') }, { logger: silentLogger() })).toThrow(/SESSION_ENCRYPTION_KEY must be 32 random bytes/);
  });
});

describe('two mesh-gateway processes over one database', () => {
  let factory: Started;
  let issuer: string;
  let publicUrl: string;
  let backend: http.Server;
  let backendPort: number;
  const SECRET = 'gateway-replicas-secret';
  const gatewayEnv = () => ({ LOGIN_CLIENT_SECRET: SECRET, SESSION_STORE: db.url, SESSION_ENCRYPTION_KEY: KEY.toString('base64') });
  const gatewayArgs = (port: number) => ['--policies', dir, '--upstream', `http://127.0.0.1:${backendPort}`, '--port', String(port), '--login-issuer', issuer, '--login-client-id', 'gw', '--public-url', publicUrl];

  beforeAll(async () => {
    const factoryPort = await freePort();
    issuer = `http://127.0.0.1:${factoryPort}`;
    const gatewayPort = await freePort();
    publicUrl = `http://127.0.0.1:${gatewayPort}`;
    await writeFile(
      path.join(dir, 'oidc.yaml'),
      [
        'clients:',
        '  - client_id: gw',
        `    client_secret: ${SECRET}`,
        `    redirect_uris: [${publicUrl}/callback]`,
        `    post_logout_redirect_uris: [${publicUrl}/]`,
        '    grant_types: [authorization_code, refresh_token]',
        '    token_endpoint_auth_method: client_secret_basic',
        '    scope: openid profile email offline_access',
        '    audiences: [serviceb]',
        'users:',
        '  - username: alice',
        '    password: alice-password',
        '',
      ].join('\n'),
    );
    factory = await startProcess('jwt-factory/main.ts', {
      env: { PORT: String(factoryPort), HOST: '127.0.0.1', KEYS_DIR: path.join(dir, 'keys'), OIDC_CONFIG: path.join(dir, 'oidc.yaml'), OIDC_ALG: 'ES256', ISSUER: issuer, PUBLIC_URL: issuer },
    });
    processes.push(factory);
    backend = http.createServer(bearerUpstream(issuer));
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    backendPort = (backend.address() as AddressInfo).port;
  }, 90_000);
  afterAll(async () => {
    backend?.closeAllConnections();
    await new Promise((resolve) => backend?.close(resolve));
  });

  const api = (g: Started, cookie: string) => apiCall(g.port, cookie);

  it('a login through A is a session on B: the API call through B reaches the backend with alice\'s token; after a restart of both it still is', async () => {
    const [a, b] = await Promise.all([startProcess('mesh/gateway-main.ts', { args: gatewayArgs(0), env: gatewayEnv() }), startProcess('mesh/gateway-main.ts', { args: gatewayArgs(0), env: gatewayEnv() })]);
    processes.push(a, b);
    const cookie = await loginThrough(a.port, issuer);
    const through = await api(b, cookie);
    expect(through.status).toBe(200);
    expect(await through.json()).toEqual({ user: 'alice' });
    await Promise.all([a.stop(), b.stop()]);
    const c = await startProcess('mesh/gateway-main.ts', { args: gatewayArgs(0), env: gatewayEnv() });
    processes.push(c);
    expect((await api(c, cookie)).status).toBe(200);
    // A cookie nobody was given is no session, on any replica.
    const forged = await api(c, randomBytes(32).toString('base64url'));
    expect(forged.status).toBe(401);
  }, 90_000);
});
