import { readFile } from 'node:fs/promises';
import path from 'node:path';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { basic, expectOAuthError, loginForCode, makeOidcFactory, webuiQuery, pkce } from './harness.js';

type Factory = Awaited<ReturnType<typeof makeOidcFactory>>;
let f: Factory;
beforeEach(async () => {
  f = await makeOidcFactory();
});
afterEach(async () => {
  await f.cleanup();
});

const post = (app: Factory['app'], route: string, body: Record<string, string>, auth?: string) => {
  const r = request(app).post(route).type('form');
  if (auth) r.set('Authorization', auth);
  return r.send(body);
};
const clientCredentials = (secret: string, app = f.app) => post(app, '/token', { grant_type: 'client_credentials' }, basic('servicea', secret));

/** The answer of a locked client: 401 invalid_client, the Basic challenge, and when to come back. */
function expectLocked(res: request.Response, retryAfter: number) {
  expectOAuthError(res, 401, 'invalid_client');
  expect(res.headers['www-authenticate']).toBe('Basic realm="jwt-factory", charset="UTF-8"');
  expect(res.headers['retry-after']).toBe(String(retryAfter));
  expect(res.body.error_description).toBe(`Too many failed authentications for this client: try again in ${retryAfter} seconds`);
}

describe('client authentication failures are limited per client_id', () => {
  it('after 5 wrong secrets at /token the client is refused for 30 s with 401 invalid_client and Retry-After, even with the right secret', async () => {
    for (let i = 0; i < 5; i += 1) {
      const res = await clientCredentials(`guess-${i}`);
      expectOAuthError(res, 401, 'invalid_client');
      expect(res.headers['retry-after']).toBeUndefined();
    }
    expectLocked(await clientCredentials('servicea-secret'), 30);
    f.time.advance(29_999);
    expectLocked(await clientCredentials('servicea-secret'), 1);
    f.time.advance(1);
    expect((await clientCredentials('servicea-secret')).status).toBe(200);
    // The success cleared the run: four more wrong secrets do not lock it.
    for (let i = 0; i < 4; i += 1) await clientCredentials(`again-${i}`);
    expect((await clientCredentials('servicea-secret')).status).toBe(200);
  });

  it('locks only the guessed client: another client, a user login and the password grant go on', async () => {
    for (let i = 0; i < 5; i += 1) await clientCredentials(`guess-${i}`);
    expectLocked(await clientCredentials('servicea-secret'), 30);
    expect((await post(f.app, '/token', { grant_type: 'client_credentials', client_id: 'poster', client_secret: 'p@ss:w rd&=' })).status).toBe(200);
    expect((await post(f.app, '/token', { grant_type: 'password', username: 'alice', password: 'alice-password' }, basic('cli', 'cli-secret'))).status).toBe(200);
    expect((await loginForCode(f.app, webuiQuery(pkce().challenge))).code).toBeDefined();
  });

  it('counts failures at /introspect, /revoke and /token together, and refuses the client at each while locked', async () => {
    await post(f.app, '/introspect', { token: 'x' }, basic('servicea', 'bad-1'));
    await post(f.app, '/introspect', { token: 'x' }, basic('servicea', 'bad-2'));
    await post(f.app, '/revoke', { token: 'x' }, basic('servicea', 'bad-3'));
    await post(f.app, '/revoke', { token: 'x' }, basic('servicea', 'bad-4'));
    await clientCredentials('bad-5');
    expectLocked(await post(f.app, '/introspect', { token: 'x' }, basic('servicea', 'servicea-secret')), 30);
    expectLocked(await post(f.app, '/revoke', { token: 'x' }, basic('servicea', 'servicea-secret')), 30);
    expectLocked(await clientCredentials('servicea-secret'), 30);
  });

  it('backs off 30 s doubling per further failure, never past 15 minutes: a guesser cannot lock a client for good', async () => {
    for (let i = 0; i < 5; i += 1) await clientCredentials(`guess-${i}`);
    const waits: number[] = [];
    for (let round = 0; round < 8; round += 1) {
      const locked = await clientCredentials('servicea-secret');
      expectOAuthError(locked, 401, 'invalid_client');
      const wait = Number(locked.headers['retry-after']);
      waits.push(wait);
      f.time.advance(wait * 1000);
      // The guesser comes back the moment the lock ends.
      await clientCredentials(`guess-round-${round}`);
    }
    expect(waits).toEqual([30, 60, 120, 240, 480, 900, 900, 900]);
    // Once the guesser stops, the client is back after at most 15 minutes.
    f.time.advance(900_000);
    expect((await clientCredentials('servicea-secret')).status).toBe(200);
  });

  it('keeps the count across a restart: a new provider over the same KEYS_DIR locks after the remaining failures', async () => {
    for (let i = 0; i < 3; i += 1) await clientCredentials(`guess-${i}`);
    const restarted = await makeOidcFactory({ dir: f.dir, start: f.time.clock() });
    for (let i = 3; i < 5; i += 1) await clientCredentials(`guess-${i}`, restarted.app);
    expectLocked(await clientCredentials('servicea-secret', restarted.app), 30);
  });

  it('keeps the login lockout across a restart too: 3 failures, a restart, 2 more, and the right password meets 429', async () => {
    const { challenge } = pkce();
    for (let i = 0; i < 3; i += 1) await loginForCode(f.app, webuiQuery(challenge), { username: 'alice', password: `bad${i}` });
    const restarted = await makeOidcFactory({ dir: f.dir, start: f.time.clock() });
    for (let i = 3; i < 5; i += 1) await loginForCode(restarted.app, webuiQuery(challenge), { username: 'alice', password: `bad${i}` });
    const locked = await loginForCode(restarted.app, webuiQuery(challenge));
    expect(locked.response.status).toBe(429);
    expect(locked.response.headers['retry-after']).toBe('30');
    expect(locked.code).toBeUndefined();
  });

  it('does not count an unknown client_id (nothing to guess there): no counter is stored', async () => {
    for (let i = 0; i < 6; i += 1) expectOAuthError(await post(f.app, '/token', { grant_type: 'client_credentials' }, basic('nobody', `x-${i}`)), 401, 'invalid_client');
    const text = await readFile(path.join(f.dir, 'oidc', 'state.json'), 'utf8').catch(() => '{}');
    expect(Object.keys((JSON.parse(text) as { failures?: object }).failures ?? {})).toHaveLength(0);
  });
});
