import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../lib/logger.js';
import { createKeySealer, type KeySealer } from '../../../jwt-factory/store/encryption.js';
import { MIGRATIONS } from '../../../jwt-factory/store/migrations.js';
import { createPostgresKeyStore } from '../../../jwt-factory/store/postgres.js';
import type { KeyStore } from '../../../jwt-factory/store/types.js';
import { issueToken, verifyToken } from '../../../jwt-factory/tokens.js';
import { signingVersion } from '../../../jwt-factory/keys.js';
import { createRotationScheduler, nextRotationAt, policyOf } from '../../../jwt-factory/rotation.js';
import { startPostgres, type TestPostgres } from '../../helpers/postgres.js';

let db: TestPostgres;
const stores: KeyStore[] = [];
const kek = randomBytes(32);

beforeAll(async () => {
  db = await startPostgres();
}, 60_000);
afterAll(async () => {
  await db?.remove();
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

/** A replica's store over the test database. */
async function replica(options: { sealer?: KeySealer; logger?: ReturnType<typeof silentLogger>; pollIntervalMs?: number; maxVersions?: number } = {}): Promise<KeyStore> {
  const store = createPostgresKeyStore({
    url: db.url,
    sealer: options.sealer ?? createKeySealer(kek),
    clock: () => new Date(),
    logger: options.logger ?? silentLogger(),
    retireAfterSeconds: 86_460,
    pollIntervalMs: options.pollIntervalMs ?? 60_000,
    connectTimeoutMs: 1000,
    ...(options.maxVersions ? { maxVersions: options.maxVersions } : {}),
  });
  stores.push(store);
  await store.load();
  return store;
}

/** Resolves once `check` holds, polling every 10 ms; fails after `ms`. */
async function within(ms: number, check: () => boolean | Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const uniqueId = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

describe('PostgreSQL key store', () => {
  it('runs its migrations once when three replicas start together', async () => {
    await Promise.all([replica(), replica(), replica()]);
    expect(await db.sql('SELECT version FROM jf_migrations ORDER BY version')).toBe(MIGRATIONS.map((m) => m.version).join('\n'));
  });

  it('keeps a created key across a restart: same kid, and it signs and verifies', async () => {
    const a = await replica();
    const { entry, created } = await a.getOrCreate(uniqueId('restart'), 'ES256');
    expect(created).toBe(true);
    const b = await replica();
    const again = (await b.get(entry.keyId))!;
    expect(again.current.kid).toBe(entry.current.kid);
    const issued = await issueToken(again, { aud: 'x' }, { issuer: 'i', ttl: 60, now: new Date() });
    await expect(verifyToken(entry, issued.token, { issuer: 'i', audience: 'x', now: new Date() })).resolves.toMatchObject({ kid: entry.current.kid });
  });

  it('stores no PEM and no private JWK member: a table dump holds sealed text only', async () => {
    const a = await replica();
    for (const alg of ['RS256', 'ES256', 'EdDSA', 'HS256'] as const) {
      const keyId = uniqueId(`dump-${alg.toLowerCase()}`);
      await a.getOrCreate(keyId, alg);
      await a.rotate(keyId);
    }
    const dump = await db.dump();
    expect(dump).toContain('jfk1.');
    expect(dump).not.toMatch(/BEGIN [A-Z ]*PRIVATE KEY/);
    for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) expect(dump).not.toContain(`"${member}":`);
  });

  it('a create on one replica is in the other replica\'s keys within 1 s (LISTEN/NOTIFY)', async () => {
    const [a, b] = await Promise.all([replica(), replica()]);
    const keyId = uniqueId('notify');
    const { entry } = await a.getOrCreate(keyId);
    const ms = await within(1000, () => b.list().includes(keyId));
    expect(b.entries().find((e) => e.keyId === keyId)?.current.kid).toBe(entry.current.kid);
    expect(ms).toBeLessThan(1000);
    const rotated = (await b.rotate(keyId, 0))!;
    await within(1000, () => a.entries().find((e) => e.keyId === keyId)?.current.kid === rotated.current.kid);
  });

  it('catches up by its periodic re-read when no notification arrives', async () => {
    const [a, b] = await Promise.all([replica(), replica({ pollIntervalMs: 100 })]);
    const keyId = uniqueId('poll');
    // A change written behind the listeners' back: only the re-read can find it.
    const { entry } = await a.getOrCreate(keyId);
    await db.sql(`UPDATE jf_keys SET revision = revision + 1 WHERE key_id = '${keyId}'`);
    await within(2000, () => b.list().includes(keyId));
    expect(b.entries().find((e) => e.keyId === keyId)?.current.kid).toBe(entry.current.kid);
  });

  it('of two replicas creating one keyId at once, one wins and both answer its kid (20 trials)', async () => {
    const [a, b] = await Promise.all([replica(), replica()]);
    for (let trial = 0; trial < 20; trial += 1) {
      const keyId = uniqueId('race-create');
      const [ra, rb] = await Promise.all([a.getOrCreate(keyId, 'ES256'), b.getOrCreate(keyId, 'ES256')]);
      expect(ra.entry.current.kid).toBe(rb.entry.current.kid);
      expect([ra.created, rb.created].filter(Boolean)).toHaveLength(1);
      expect(await db.sql(`SELECT count(*) FROM jf_key_versions WHERE key_id = '${keyId}'`)).toBe('1');
    }
  });

  it('of two replicas rotating at once, one wins, both answer its kid and no acknowledged kid is lost (20 trials)', async () => {
    const [a, b] = await Promise.all([replica(), replica()]);
    const keyId = uniqueId('race-rotate');
    await a.getOrCreate(keyId, 'ES256');
    const acknowledged = new Set<string>();
    for (let trial = 0; trial < 20; trial += 1) {
      const [ra, rb] = await Promise.all([a.rotate(keyId, 0), b.rotate(keyId, 0)]);
      expect(ra!.current.kid).toBe(rb!.current.kid);
      acknowledged.add(ra!.current.kid);
    }
    const stored = new Set((await db.sql(`SELECT kid FROM jf_key_versions WHERE key_id = '${keyId}'`)).split('\n'));
    expect([...acknowledged].filter((kid) => !stored.has(kid))).toEqual([]);
    expect(acknowledged.size).toBe(20);
    // A fresh replica loads them all: the acknowledged kids verify after a restart too.
    const c = await replica();
    const loaded = (await c.get(keyId))!;
    expect([loaded.current, ...loaded.previous].map((v) => v.kid)).toEqual(expect.arrayContaining([...acknowledged]));
  });

  it('a key\'s own rotation interval reaches the other replica, and two schedulers finding it due rotate it once', async () => {
    const [a, b] = await Promise.all([replica(), replica()]);
    const keyId = uniqueId('schedule');
    const { entry } = await a.getOrCreate(keyId, 'ES256');
    await a.setRotationInterval(keyId, 600);
    await within(1000, () => b.entries().find((e) => e.keyId === keyId)?.rotationInterval === 600);
    const defaults = { interval: 0, publishAhead: 60 };
    const due = nextRotationAt({ ...entry, rotationInterval: 600 }, policyOf({ ...entry, rotationInterval: 600 }, defaults))!;
    const schedulers = [a, b].map((keystore) => createRotationScheduler({ keystore, clock: () => due, logger: silentLogger(), defaults }));
    await Promise.all(schedulers.map((s) => s.tick()));
    expect(await db.sql(`SELECT count(*) FROM jf_key_versions WHERE key_id = '${keyId}'`)).toBe('2');
  });

  it('refuses a sealed key moved onto another keyId, and one sealed with a key it was not given', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _e, cb) => (lines.push(String(chunk)), cb()) });
    const a = await replica();
    const victim = uniqueId('victim');
    const thief = uniqueId('thief');
    await a.getOrCreate(victim, 'ES256');
    await a.getOrCreate(thief, 'ES256');
    await db.sql(`UPDATE jf_key_versions SET private_key = (SELECT private_key FROM jf_key_versions WHERE key_id = '${victim}') WHERE key_id = '${thief}'`);
    const b = await replica({ logger: pino({ level: 'warn' }, sink) as never });
    expect(b.list()).toContain(victim);
    expect(b.list()).not.toContain(thief);
    expect(lines.join('')).toContain(thief);
    const stranger = await replica({ sealer: createKeySealer(randomBytes(32)) });
    expect(stranger.list()).not.toContain(victim);
    const rotatedKek = await replica({ sealer: createKeySealer(randomBytes(32), [kek]) });
    expect(rotatedKek.list()).toContain(victim);
  });

  it('refuses a rotation past MAX_KEY_VERSIONS with 429 rotation_limit_reached and changes nothing', async () => {
    const a = await replica({ maxVersions: 2 });
    const keyId = uniqueId('capped');
    await a.getOrCreate(keyId, 'ES256');
    await a.rotate(keyId, 0);
    await expect(a.rotate(keyId, 0)).rejects.toMatchObject({ code: 'rotation_limit_reached', status: 429 });
    expect(await db.sql(`SELECT count(*) FROM jf_key_versions WHERE key_id = '${keyId}'`)).toBe('2');
  });

  it('reseal moves every version onto the current encryption key, after which the old key can go', async () => {
    const oldKek = randomBytes(32);
    const newKek = randomBytes(32);
    const before = await replica({ sealer: createKeySealer(oldKek) });
    const keyId = uniqueId('reseal');
    await before.getOrCreate(keyId, 'ES256');
    const during = await replica({ sealer: createKeySealer(newKek, [oldKek]) });
    const { resealed } = await during.reseal();
    expect(resealed).toBeGreaterThanOrEqual(1);
    expect((await during.reseal()).resealed).toBe(0);
    const after = await replica({ sealer: createKeySealer(newKek) });
    expect(after.list()).toContain(keyId);
  });

  it('while the database is down: signing goes on, creating answers 503, readiness names the database and comes back', async () => {
    const a = await replica();
    const keyId = uniqueId('outage');
    const { entry } = await a.getOrCreate(keyId, 'ES256');
    expect(a.health()).toEqual({ ready: true, missing: [] });
    await db.stop();
    try {
      const held = (await a.get(keyId))!;
      const issued = await issueToken(held, { aud: 'x' }, { issuer: 'i', ttl: 60, now: new Date() });
      expect(issued.kid).toBe(signingVersion(entry, new Date()).kid);
      await expect(a.getOrCreate(uniqueId('during'))).rejects.toMatchObject({ code: 'key_store_unavailable', status: 503 });
      await expect(a.rotate(keyId)).rejects.toMatchObject({ code: 'key_store_unavailable', status: 503 });
      expect(await a.reload(keyId)).toBe(held);
      expect(a.health()).toEqual({ ready: false, missing: ['key database'] });
    } finally {
      await db.start();
    }
    await within(5000, () => a.health().ready);
    await expect(a.getOrCreate(uniqueId('after'))).resolves.toMatchObject({ created: true });
  }, 20_000);
});
