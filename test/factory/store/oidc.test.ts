import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFileOidcStore } from '../../../jwt-factory/oidc/store.js';
import { createPostgresOidcStore, type PostgresOidcStore } from '../../../jwt-factory/oidc/store-postgres.js';
import { loadFactoryConfig } from '../../../jwt-factory/config.js';
import { MIGRATIONS } from '../../../jwt-factory/store/migrations.js';
import { silentLogger } from '../../../lib/logger.js';
import { startPostgres, type TestPostgres } from '../../helpers/postgres.js';
import { manualClock } from '../harness.js';
import { codeRecord, oidcStoreContract, refreshRecord } from './oidc-contract.js';

let db: TestPostgres;
const folders: string[] = [];
const opened: PostgresOidcStore[] = [];

beforeAll(async () => {
  db = await startPostgres();
}, 60_000);
afterAll(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
  await db?.remove();
  await Promise.all(folders.map((f) => rm(f, { recursive: true, force: true })));
});

/** A PostgreSQL OIDC store over the test database (every `place` is the same database: ids never collide). */
async function pgStore(clock: () => Date, options: { sweepIntervalMs?: number } = {}): Promise<PostgresOidcStore> {
  const store = createPostgresOidcStore({ url: db.url, clock, logger: silentLogger(), connectTimeoutMs: 1000, ...options });
  opened.push(store);
  await store.open();
  return store;
}

oidcStoreContract('the file store', {
  place: async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'oidc-store-'));
    folders.push(dir);
    return dir;
  },
  open: async (clock, dir) => createFileOidcStore({ dir, clock }),
});

oidcStoreContract('the PostgreSQL store', {
  place: async () => db.url,
  open: (clock) => pgStore(clock),
});

describe('the PostgreSQL OIDC store', () => {
  it('runs the migrations once when three replicas open together, beside the key tables', async () => {
    const time = manualClock();
    await Promise.all([pgStore(time.clock), pgStore(time.clock), pgStore(time.clock)]);
    expect(await db.sql('SELECT version FROM jf_migrations ORDER BY version')).toBe(MIGRATIONS.map((m) => m.version).join('\n'));
    expect(await db.sql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE tablename LIKE 'jf_oidc_%'")).toBe('jf_oidc_codes,jf_oidc_failures,jf_oidc_marks,jf_oidc_refresh,jf_oidc_sessions');
  });

  it('of two replicas (two pools) redeeming one code and rotating one refresh token at once, exactly one wins each time (20 trials)', async () => {
    const time = manualClock();
    const [a, b] = await Promise.all([pgStore(time.clock), pgStore(time.clock)]);
    const t = time.clock().getTime();
    let codeWins = 0;
    let refreshWins = 0;
    for (let trial = 0; trial < 20; trial += 1) {
      const code = codeRecord(t + 60_000);
      const refresh = refreshRecord(t + 60_000);
      await a.saveCode(code);
      await b.saveRefresh(refresh);
      const [ca, cb, ra, rb] = await Promise.all([a.useCode(code.id), b.useCode(code.id), a.useRefresh(refresh.id), b.useRefresh(refresh.id)]);
      const codeWinners = [ca, cb].filter((r) => r !== undefined && r.usedAt === undefined);
      const refreshWinners = [ra, rb].filter((r) => r !== undefined && r.usedAt === undefined);
      expect(codeWinners).toHaveLength(1);
      expect(refreshWinners).toHaveLength(1);
      // The loser sees the winner's mark, not an absent row.
      expect([ca, cb].every((r) => r?.id === code.id)).toBe(true);
      codeWins += codeWinners.length;
      refreshWins += refreshWinners.length;
    }
    expect([codeWins, refreshWins]).toEqual([20, 20]);
  });

  it('of two replicas (two pools) counting 20 failures of one key at once, the counts are 1 to 20 and the row holds 20', async () => {
    const time = manualClock();
    const [a, b] = await Promise.all([pgStore(time.clock), pgStore(time.clock)]);
    const key = randomBytes(32).toString('base64url');
    const until = time.clock().getTime() + 60_000;
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).countFailure(key, until)));
    expect(answers.map((r) => r.failures).sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(await db.sql(`SELECT failures FROM jf_oidc_failures WHERE key = '${key}'`)).toBe('20');
  });

  it('deletes every expired row when it sweeps, and keeps the live ones', async () => {
    const time = manualClock();
    const store = await pgStore(time.clock);
    const t = time.clock().getTime();
    const dead = codeRecord(t + 1000);
    const live = codeRecord(t + 120_000);
    const deadRefresh = refreshRecord(t + 1000);
    await store.saveCode(dead);
    await store.saveCode(live);
    await store.saveRefresh(deadRefresh);
    await store.remember('assertion', `sweep-${randomBytes(4).toString('hex')}`, t + 1000);
    await store.saveSession({ id: randomBytes(8).toString('hex'), sid: 's', sub: 'alice', authTime: 0, expiresAt: t + 1000 });
    const deadCounter = randomBytes(8).toString('hex');
    const liveCounter = randomBytes(8).toString('hex');
    await store.countFailure(deadCounter, t + 1000);
    await store.countFailure(liveCounter, t + 120_000);
    time.advance(1000);
    expect(await store.sweep()).toBeGreaterThanOrEqual(5);
    expect(await db.sql(`SELECT string_agg(key, ',') FROM jf_oidc_failures WHERE key IN ('${deadCounter}', '${liveCounter}')`)).toBe(liveCounter);
    expect(await db.sql(`SELECT count(*) FROM jf_oidc_codes WHERE id IN ('${dead.id}', '${live.id}')`)).toBe('1');
    expect(await db.sql(`SELECT count(*) FROM jf_oidc_refresh WHERE id = '${deadRefresh.id}'`)).toBe('0');
    expect(await db.sql(`SELECT count(*) FROM jf_oidc_marks WHERE expires_at <= '${new Date(t + 1000).toISOString()}'`)).toBe('0');
  });

  it('sweeps on its own at its interval', async () => {
    const time = manualClock();
    const store = await pgStore(time.clock, { sweepIntervalMs: 100 });
    const dead = codeRecord(time.clock().getTime() - 1);
    await store.saveCode(dead);
    const deadline = Date.now() + 10_000;
    while ((await db.sql(`SELECT count(*) FROM jf_oidc_codes WHERE id = '${dead.id}'`)) !== '0') {
      if (Date.now() > deadline) throw new Error('not swept within 10 s');
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it('while the database is down answers 503 temporarily_unavailable with Retry-After, and is reachable again once it is back', async () => {
    const time = manualClock();
    const store = await pgStore(time.clock);
    const code = codeRecord(time.clock().getTime() + 60_000);
    await store.saveCode(code);
    expect(store.isReachable()).toBe(true);
    await db.stop();
    try {
      const refused = await store.useCode(code.id).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(refused).toMatchObject({ code: 'temporarily_unavailable', status: 503, expose: true, headers: { 'Retry-After': '2' } });
      await expect(store.getSession('x')).rejects.toMatchObject({ code: 'temporarily_unavailable' });
      expect(store.isReachable()).toBe(false);
    } finally {
      await db.start();
    }
    const deadline = Date.now() + 15_000;
    while (!store.isReachable()) {
      if (Date.now() > deadline) throw new Error('not reachable within 15 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    // Nothing was lost: the code is still there, unused.
    expect((await store.useCode(code.id))?.usedAt).toBeUndefined();
  }, 40_000);

  it('a bad query is a bug, not an outage: it stays an error and the store stays reachable', async () => {
    const time = manualClock();
    const store = await pgStore(time.clock);
    await db.sql('ALTER TABLE jf_oidc_sessions RENAME TO jf_oidc_sessions_moved');
    try {
      const err = await store.getSession('x').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: '42P01' });
      expect(store.isReachable()).toBe(true);
    } finally {
      await db.sql('ALTER TABLE jf_oidc_sessions_moved RENAME TO jf_oidc_sessions');
    }
  });
});

describe('the file OIDC store', () => {
  it('writes one 0600 file and drops expired records at the next write', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'oidc-store-'));
    folders.push(dir);
    const time = manualClock();
    const store = createFileOidcStore({ dir, clock: time.clock });
    const dead = codeRecord(time.clock().getTime() + 1000);
    await store.saveCode(dead);
    time.advance(1000);
    await store.remember('assertion', 'x', time.clock().getTime() + 1000);
    const file = path.join(dir, 'state.json');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, 'utf8');
    expect(text).not.toContain(dead.id);
    expect(text).toContain('assertion:x');
  });

  it('keeps at most maxFailureCounters failure counters, dropping the one whose last failure is oldest', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'oidc-store-'));
    folders.push(dir);
    const time = manualClock();
    const store = createFileOidcStore({ dir, clock: time.clock, maxFailureCounters: 3 });
    const until = time.clock().getTime() + 60_000;
    for (const key of ['k1', 'k2', 'k3']) await store.countFailure(key, until);
    // A new failure of k1 makes it the newest, so k2 is the oldest when k4 arrives.
    await store.countFailure('k1', until);
    await store.countFailure('k4', until);
    expect(await store.getFailures('k2')).toBeUndefined();
    expect((await store.getFailures('k1'))?.failures).toBe(2);
    const reopened = createFileOidcStore({ dir, clock: time.clock, maxFailureCounters: 3 });
    expect((await Promise.all(['k1', 'k2', 'k3', 'k4'].map((k) => reopened.getFailures(k)))).map((r) => r?.failures)).toEqual([2, undefined, 1, 1]);
  });
});

describe('OIDC_CONFIG with WORKERS > 1', () => {
  it('is refused with the file store (one process owns state.json) and accepted with a postgres:// KEY_STORE', () => {
    expect(() => loadFactoryConfig({ OIDC_CONFIG: 'x.yaml', WORKERS: '2' })).toThrow(/OIDC_CONFIG: needs WORKERS=1 with the file KEY_STORE/);
    const config = loadFactoryConfig({ OIDC_CONFIG: 'x.yaml', WORKERS: '2', KEY_STORE: 'postgres://u@127.0.0.1:1/db', KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') });
    expect(config.WORKERS).toBe(2);
  });
});
