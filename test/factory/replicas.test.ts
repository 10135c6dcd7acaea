import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startProcess, type Started } from '../helpers/process.js';

/** Several real factory processes over one PostgreSQL database: what replicas behind a Service do. */

let db: TestPostgres;
const started: Started[] = [];
const KEK = randomBytes(32).toString('base64');

beforeAll(async () => {
  db = await startPostgres();
}, 60_000);
afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await db?.remove();
}, 30_000);

/** A factory replica on a free port over the test database. */
async function replica(env: Record<string, string> = {}): Promise<Started> {
  const p = await startProcess('jwt-factory/main.ts', {
    // Up to 40 rotations in a row keep all their versions published (each may have signed tokens): above the default cap of 5.
    env: { PORT: '0', HOST: '127.0.0.1', KEY_STORE: db.url, KEY_ENCRYPTION_KEY: KEK, MAX_KEY_VERSIONS: '45', ...env },
  });
  started.push(p);
  return p;
}

const url = (p: Started, path: string) => `http://127.0.0.1:${p.port}${path}`;
const keyIdFor = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

/** Polls `check` every 20 ms until it holds; resolves with the milliseconds it took, fails after `ms`. */
async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const etag = async (p: Started) => (await fetch(url(p, '/.well-known/jwks.json'))).headers.get('etag');
const jwksKids = async (p: Started) => ((await (await fetch(url(p, '/.well-known/jwks.json'))).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);

describe('replicas over one PostgreSQL database', () => {
  let a: Started;
  let b: Started;
  beforeAll(async () => {
    [a, b] = await Promise.all([replica(), replica()]);
  }, 60_000);

  it('a key created on A is in B\'s JWKS, with the same ETag, within 1 s', async () => {
    const keyId = keyIdFor('seen');
    const created = await fetch(url(a, `/keys/${keyId}`), { method: 'POST' });
    expect(created.status).toBe(200);
    const { kid } = (await created.json()) as { kid: string };
    const ms = await within(1000, async () => (await jwksKids(b)).includes(kid) && (await etag(a)) === (await etag(b)));
    expect(ms).toBeLessThan(1000);
  });

  it('of rotations racing on A and B, one wins, both answer its kid, and no acknowledged kid is lost (20 trials)', async () => {
    const keyId = keyIdFor('race');
    expect((await fetch(url(a, `/keys/${keyId}?alg=ES256`), { method: 'POST' })).status).toBe(200);
    // The race is between replicas that hold the key (B hears of it by NOTIFY within a second).
    await within(1000, async () => (await etag(a)) === (await etag(b)));
    const acknowledged: string[] = [];
    for (let trial = 0; trial < 20; trial += 1) {
      const answers = await Promise.all([a, b].map((p) => fetch(url(p, `/keys/${keyId}/rotate?publishAhead=0`), { method: 'POST' })));
      expect(answers.map((r) => r.status)).toEqual([200, 200]);
      const [ka, kb] = (await Promise.all(answers.map((r) => r.json()))) as Array<{ kid: string }>;
      // Overlapping rotations answer one kid. On a loaded machine B may only receive its request
      // once A's rotation is committed and B has heard of it: then B rotates over A's version, a
      // rotation of its own, and both kids are acknowledged (none may be lost: checked below).
      acknowledged.push(...new Set([ka!.kid, kb!.kid]));
    }
    await within(1000, async () => (await etag(a)) === (await etag(b)));
    const published = new Set(await jwksKids(b));
    expect(acknowledged.filter((kid) => !published.has(kid))).toEqual([]);
    expect(new Set(acknowledged).size).toBe(acknowledged.length);
    expect(acknowledged.length).toBeGreaterThanOrEqual(20);
  }, 60_000);

  it('of creates racing on A and B for one keyId, one key wins and both answer its kid (20 trials)', async () => {
    for (let trial = 0; trial < 20; trial += 1) {
      const keyId = keyIdFor('create-race');
      const answers = await Promise.all([a, b].map((p) => fetch(url(p, `/keys/${keyId}?alg=ES256`), { method: 'POST' })));
      const bodies = (await Promise.all(answers.map((r) => r.json()))) as Array<{ kid: string; created: boolean }>;
      expect(bodies[0]!.kid).toBe(bodies[1]!.kid);
      expect(bodies.filter((x) => x.created)).toHaveLength(1);
    }
  }, 60_000);

  it('kill -9 during rotations loses no acknowledged kid and leaves no half-written version', async () => {
    const c = await replica();
    const keyId = keyIdFor('crash');
    expect((await fetch(url(c, `/keys/${keyId}`), { method: 'POST' })).status).toBe(200);
    const acknowledged: string[] = [];
    const inFlight = Array.from({ length: 8 }, () =>
      fetch(url(c, `/keys/${keyId}/rotate?publishAhead=0`), { method: 'POST' })
        .then(async (r) => {
          if (r.status === 200) acknowledged.push(((await r.json()) as { kid: string }).kid);
        })
        .catch(() => undefined),
    );
    // RSA key generation takes tens of ms: the kill lands while rotations are being generated and committed.
    await new Promise((r) => setTimeout(r, 150));
    c.child.kill('SIGKILL');
    await Promise.all(inFlight);
    const stored = (await db.sql(`SELECT kid FROM jf_key_versions WHERE key_id = '${keyId}'`)).split('\n');
    expect(acknowledged.filter((kid) => !stored.includes(kid))).toEqual([]);
    // Every stored version opens: a fresh replica loads the key with nothing skipped.
    const d = await replica();
    expect(d.output()).toMatch(/"msg":"keys loaded"/);
    expect(d.output()).toMatch(/"skipped":0/);
    const published = new Set(await jwksKids(d));
    expect(stored.filter((kid) => !published.has(kid))).toEqual([]);
    await d.stop();
  }, 60_000);

  it('while PostgreSQL is stopped: tokens are still issued, creating answers 503, /readyz names the database, then all comes back', async () => {
    const keyId = keyIdFor('outage');
    expect((await fetch(url(a, `/keys/${keyId}`), { method: 'POST' })).status).toBe(200);
    await db.stop();
    try {
      const issued = await fetch(url(a, `/issueToken/${keyId}`), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"aud":"x"}' });
      expect(issued.status).toBe(200);
      const refused = await fetch(url(a, `/keys/${keyIdFor('during')}`), { method: 'POST' });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('content-type')).toMatch(/application\/json/);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('key_store_unavailable');
      await within(5000, async () => (await fetch(url(a, '/readyz'))).status === 503);
      const ready = (await (await fetch(url(a, '/readyz'))).json()) as { status: string; missing: string[] };
      expect(ready).toMatchObject({ status: 'degraded', missing: ['key database'] });
      expect((await fetch(url(a, '/.well-known/jwks.json'))).status).toBe(200);
    } finally {
      await db.start();
    }
    await within(10_000, async () => (await fetch(url(a, '/readyz'))).status === 200 && (await fetch(url(b, '/readyz'))).status === 200);
    expect((await fetch(url(a, `/keys/${keyIdFor('after')}`), { method: 'POST' })).status).toBe(200);
  }, 60_000);
});
