import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { createKeyStore } from '../../jwt-factory/keystore.js';
import { createRotationScheduler, nextRotationAt } from '../../jwt-factory/rotation.js';
import { makeFactory, manualClock } from './harness.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** A factory with rotation settings and a scheduler on its clock. */
async function rotatingFactory(env: Record<string, string>) {
  const f = await makeFactory(env);
  cleanups.push(f.cleanup, () => f.keystore.close());
  const scheduler = createRotationScheduler({
    keystore: f.keystore,
    clock: f.time.clock,
    logger: silentLogger(),
    defaults: { interval: f.config.ROTATION_INTERVAL, publishAhead: f.config.ROTATION_PUBLISH_AHEAD },
  });
  return { ...f, scheduler };
}

describe('automatic rotation at exact instants', () => {
  it('rotates a key exactly at interval − publishAhead after it started signing, and GET /keys/:keyId shows that schedule', async () => {
    const f = await rotatingFactory({ ROTATION_INTERVAL: '3600', ROTATION_PUBLISH_AHEAD: '1260' });
    const created = (await request(f.app).post('/keys/auto').expect(200)).body;
    const dueAt = f.time.clock().getTime() + (3600 - 1260) * 1000;
    expect(created.rotation).toEqual({ interval: 3600, publishAhead: 1260, nextAt: new Date(dueAt).toISOString() });
    f.time.set(new Date(dueAt - 1));
    expect(await f.scheduler.tick()).toBe(0);
    f.time.set(new Date(dueAt));
    expect(await f.scheduler.tick()).toBe(1);
    const after = (await request(f.app).get('/keys/auto').expect(200)).body;
    // Published now, signing from the moment the old key has signed a full interval.
    expect(after.kid).toBe(created.kid);
    expect(after.versions.map((v: { state: string }) => v.state)).toEqual(['published', 'signing']);
    expect(after.versions[0].activateAt).toBe(new Date(dueAt + 1_260_000).toISOString());
    expect(after.rotation.nextAt).toBe(new Date(dueAt + 3_600_000).toISOString());
    expect(await f.scheduler.tick()).toBe(0);
  });

  it('follows a key\'s own interval (PUT /keys/:keyId/rotation), and null gives it back the factory\'s', async () => {
    const f = await rotatingFactory({ ROTATION_PUBLISH_AHEAD: '1260' });
    await request(f.app).post('/keys/own').expect(200);
    const start = f.time.clock().getTime();
    const set = await request(f.app).put('/keys/own/rotation').send({ interval: 7200 }).expect(200);
    expect(set.body).toEqual({ keyId: 'own', rotation: { interval: 7200, publishAhead: 1260, nextAt: new Date(start + (7200 - 1260) * 1000).toISOString() } });
    // Persisted: a new store over the same folder reads the key's own interval back.
    const again = createKeyStore({ dir: f.dir, clock: f.time.clock, logger: silentLogger(), retireAfterSeconds: 1, pollIntervalMs: 0 });
    await again.load();
    expect((await again.get('own'))!.rotationInterval).toBe(7200);
    f.time.set(new Date(start + (7200 - 1260) * 1000));
    expect(await f.scheduler.tick()).toBe(1);
    const reset = await request(f.app).put('/keys/own/rotation').send({ interval: null }).expect(200);
    expect(reset.body.rotation).toEqual({ interval: 0, publishAhead: 1260, nextAt: null });
  });

  it('answers 400 invalid_rotation_interval for a bad interval and 404 key_not_found for an unknown key', async () => {
    const f = await rotatingFactory({});
    await request(f.app).post('/keys/bad').expect(200);
    for (const body of [{ interval: 'weekly' }, { interval: -1 }, { interval: 1.5 }, {}, { interval: 1260 }]) {
      const res = await request(f.app).put('/keys/bad/rotation').send(body);
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toMatch(/application\/json/);
      expect(res.body.error.code).toBe('invalid_rotation_interval');
    }
    expect((await request(f.app).put('/keys/ghost/rotation').send({ interval: 7200 }).expect(404)).body.error.code).toBe('key_not_found');
  });

  it('bounds the JWKS max-age by the next scheduled change', async () => {
    const f = await rotatingFactory({ ROTATION_INTERVAL: '3600', ROTATION_PUBLISH_AHEAD: '1260', JWKS_MAX_AGE: '300' });
    await request(f.app).post('/keys/cache').expect(200);
    expect((await request(f.app).get('/.well-known/jwks.json')).headers['cache-control']).toBe('public, max-age=300');
    f.time.advance((3600 - 1260 - 42) * 1000);
    expect((await request(f.app).get('/.well-known/jwks.json')).headers['cache-control']).toBe('public, max-age=42');
    expect((await request(f.app).get('/keys/cache/jwks.json')).headers['cache-control']).toBe('public, max-age=42');
  });

  it('two processes finding one key due at the same instant rotate it once', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'rotation-test-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const time = manualClock(new Date('2026-03-01T00:00:00Z'));
    const defaults = { interval: 600, publishAhead: 60 };
    const stores = [0, 1].map(() => createKeyStore({ dir, clock: time.clock, logger: silentLogger(), retireAfterSeconds: 120, pollIntervalMs: 0 }));
    cleanups.push(() => Promise.all(stores.map((s) => s.close())));
    await Promise.all(stores.map((s) => s.load()));
    const { entry } = await stores[0]!.getOrCreate('once', 'ES256');
    await stores[1]!.get('once');
    time.set(nextRotationAt(entry, defaults)!);
    const schedulers = stores.map((keystore) => createRotationScheduler({ keystore, clock: time.clock, logger: silentLogger(), defaults }));
    await Promise.all(schedulers.map((s) => s.tick()));
    const [a, b] = await Promise.all(stores.map((s) => s.reload('once')));
    expect(a!.previous).toHaveLength(1);
    expect(a!.current.kid).toBe(b!.current.kid);
  });
});

/**
 * A verifier that behaves like istiod: it refetches the JWKS every `refreshSeconds` and never
 * because a token carries an unknown kid. Tokens are issued every second and verified at once
 * (and again 29 s later) across five automatic rotations, with istiod's 20 min scaled to 20 s.
 */
/** istiod's refresh runs on its own timer, out of step with the rotations (which fall on multiples of 20 s here). */
const REFRESH_PHASE = 7;

async function simulateIstiod(publishAhead: number): Promise<{ verified: number; failed: number; rotations: number }> {
  const refreshSeconds = 20;
  const interval = 100;
  const f = await rotatingFactory({ ROTATION_INTERVAL: String(interval), ROTATION_PUBLISH_AHEAD: String(publishAhead), TOKEN_TTL: '30', MAX_TOKEN_TTL: '60', ALGORITHM: 'ES256' });
  await request(f.app).post('/keys/mesh').expect(200);
  let jwks = createLocalJWKSet((await request(f.app).get('/.well-known/jwks.json')).body as JSONWebKeySet);
  const recent: string[] = [];
  let verified = 0;
  let failed = 0;
  let rotations = 0;
  const verify = async (token: string) => {
    try {
      await jwtVerify(token, jwks, { currentDate: f.time.clock(), issuer: f.config.ISSUER });
      verified += 1;
    } catch {
      failed += 1;
    }
  };
  for (let second = 1; rotations < 5; second += 1) {
    f.time.advance(1000);
    rotations += await f.scheduler.tick();
    if (second % refreshSeconds === REFRESH_PHASE) jwks = createLocalJWKSet((await request(f.app).get('/.well-known/jwks.json')).body as JSONWebKeySet);
    const token = (await request(f.app).post('/issueToken/mesh').send({ aud: 'mesh' }).expect(200)).text;
    recent.push(token);
    await verify(token);
    if (recent.length > 29) await verify(recent.shift()!);
  }
  // Run one more interval so the fifth rotation's key signs and is checked too.
  for (let second = 0; second < interval; second += 1) {
    f.time.advance(1000);
    if (second % refreshSeconds === REFRESH_PHASE) jwks = createLocalJWKSet((await request(f.app).get('/.well-known/jwks.json')).body as JSONWebKeySet);
    await verify((await request(f.app).post('/issueToken/mesh').send({ aud: 'mesh' }).expect(200)).text);
  }
  return { verified, failed, rotations };
}

describe('a simulated istiod across five automatic rotations', () => {
  it('fails no verification when keys are published refresh + skew ahead (publishAhead 21 s for a 20 s refresh)', async () => {
    const result = await simulateIstiod(21);
    expect(result.rotations).toBe(5);
    expect(result.failed).toBe(0);
    expect(result.verified).toBeGreaterThan(500);
  }, 30_000);

  it('fails verifications when the new key signs at once (publishAhead 0): the simulation can tell', async () => {
    const result = await simulateIstiod(0);
    expect(result.rotations).toBe(5);
    expect(result.failed).toBeGreaterThan(0);
  }, 30_000);
});
