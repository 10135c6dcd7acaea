import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFactoryConfig } from '../../../jwt-factory/config.js';
import { FACTORY_POOL, openKeyStore, openOidcStore } from '../../../jwt-factory/store/open.js';
import { silentLogger } from '../../../lib/logger.js';
import { createPoolSet } from '../../../lib/postgres.js';
import { startPostgres, type TestPostgres } from '../../helpers/postgres.js';
import { codeRecord } from './oidc-contract.js';

let db: TestPostgres;

beforeAll(async () => {
  db = await startPostgres();
}, 60_000);
afterAll(async () => {
  await db?.remove();
});

/** The connections the server holds for `application` (pg_stat_activity), counted from a connection of its own. */
async function connectionsOf(application: string): Promise<number> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [application]);
    return rows[0]!.n;
  } finally {
    await client.end();
  }
}

/** The factory's config over the test database, its connections tagged with `application`. */
function configFor(application: string) {
  const url = new URL(db.url);
  url.searchParams.set('application_name', application);
  return loadFactoryConfig({ KEY_STORE: url.href, KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') });
}

describe("the factory's stores on one PostgreSQL database", () => {
  it('share one pool: a burst on keys and OIDC state at once holds at most its 10 connections plus the LISTEN one', async () => {
    const application = `pool_${randomBytes(4).toString('hex')}`;
    const config = configFor(application);
    const runtime = { clock: () => new Date(), logger: silentLogger(), pools: createPoolSet(FACTORY_POOL) };
    const keys = openKeyStore(config, runtime);
    await keys.load();
    const oidc = await openOidcStore(config, runtime);
    try {
      expect(runtime.pools.size()).toBe(1);
      const expiresAt = Date.now() + 60_000;
      // 20 re-reads of unknown keyIds and 20 saved codes in one tick: separate pools (10 + 5) would open 15.
      const answers = await Promise.all([
        ...Array.from({ length: 20 }, (_, i) => keys.get(`absent-${i}`)),
        ...Array.from({ length: 20 }, () => oidc.store.saveCode(codeRecord(expiresAt))),
      ]);
      expect(answers.slice(0, 20)).toEqual(Array(20).fill(undefined));
      const held = await connectionsOf(application);
      expect(held).toBeGreaterThan(2);
      expect(held).toBeLessThanOrEqual(FACTORY_POOL.max + 1);

      // Closing one store leaves the shared pool to the other.
      await oidc.close();
      await expect(keys.getOrCreate(`after-${application}`, 'ES256')).resolves.toMatchObject({ created: true });
    } finally {
      await keys.close();
      await oidc.close();
      await runtime.pools.end();
    }
    expect(runtime.pools.size()).toBe(0);
  }, 60_000);

  it('keep apart only when the URLs differ: one pool per URL, ended together', async () => {
    const pools = createPoolSet(FACTORY_POOL);
    const a = pools.poolFor(`${db.url}?application_name=a`);
    expect(pools.poolFor(`${db.url}?application_name=a`)).toBe(a);
    const b = pools.poolFor(`${db.url}?application_name=b`);
    expect(b).not.toBe(a);
    expect(pools.size()).toBe(2);
    expect(a.options.max).toBe(FACTORY_POOL.max);
    await Promise.all([a.query('SELECT 1'), b.query('SELECT 1')]);
    await pools.end();
    expect(a.ending && b.ending).toBe(true);
  });
});
