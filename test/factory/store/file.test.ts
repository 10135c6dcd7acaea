import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import request from 'supertest';
import { silentLogger } from '../../../lib/logger.js';
import { createKeyStore } from '../../../jwt-factory/keystore.js';
import type { KeyStore } from '../../../jwt-factory/store/types.js';
import { makeFactory } from '../harness.js';

/** The file store shared by several stores on one folder: what WORKERS or replicas on a shared volume do. */

let dir: string;
const open: KeyStore[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'filestore-test-'));
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

async function process(pollIntervalMs = 5000): Promise<KeyStore> {
  const s = createKeyStore({ dir, clock: () => new Date(), logger: silentLogger(), retireAfterSeconds: 86_460, pollIntervalMs });
  open.push(s);
  await s.load();
  return s;
}

/** Polls `check` every 10 ms until it holds; fails after `ms`. */
async function within(ms: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const kidsOnDisk = async (keyId: string) => ((JSON.parse(await readFile(path.join(dir, `${keyId}.json`), 'utf8')) as { versions: Array<{ kid: string }> }).versions).map((v) => v.kid);

describe('file store shared by several processes', () => {
  it('of two rotating one keyId at once, one wins, both answer its kid and no acknowledged kid is lost (20 trials)', async () => {
    const [a, b] = await Promise.all([process(), process()]);
    await a.getOrCreate('race', 'ES256');
    await b.get('race');
    const acknowledged: string[] = [];
    for (let trial = 0; trial < 20; trial += 1) {
      const [ra, rb] = await Promise.all([a.rotate('race'), b.rotate('race')]);
      expect(ra!.current.kid).toBe(rb!.current.kid);
      acknowledged.push(ra!.current.kid);
    }
    expect(new Set(acknowledged).size).toBe(20);
    const stored = await kidsOnDisk('race');
    expect(acknowledged.filter((kid) => !stored.includes(kid))).toEqual([]);
  });

  it('of two creating one keyId at once, one wins and both answer its kid (20 trials)', async () => {
    const [a, b] = await Promise.all([process(), process()]);
    for (let trial = 0; trial < 20; trial += 1) {
      const [ra, rb] = await Promise.all([a.getOrCreate(`c${trial}`, 'ES256'), b.getOrCreate(`c${trial}`, 'ES256')]);
      expect(ra.entry.current.kid).toBe(rb.entry.current.kid);
      expect([ra.created, rb.created].filter(Boolean)).toHaveLength(1);
    }
  });

  it('a key created or rotated by one is in the other\'s entries within 1 s', async () => {
    const [a, b] = await Promise.all([process(), process(200)]);
    const { entry } = await a.getOrCreate('seen');
    await within(1000, () => b.list().includes('seen'));
    expect(b.entries()[0]!.current.kid).toBe(entry.current.kid);
    const rotated = (await a.rotate('seen'))!;
    await within(1000, () => b.entries()[0]!.current.kid === rotated.current.kid);
  });

  it('removes temp files a crash left behind at start, but not one whose keyId lock is held by a live writer', async () => {
    await writeFile(path.join(dir, '.svc.json.0123456789ab.tmp'), '{"half":');
    await writeFile(path.join(dir, '.busy.json.0123456789ab.tmp'), '{"half":');
    await writeFile(path.join(dir, '.busy.lock'), JSON.stringify({ host: 'elsewhere', pid: 1, nonce: 'x' }));
    const s = await process();
    expect((await readdir(dir)).sort()).toEqual(['.busy.json.0123456789ab.tmp', '.busy.lock']);
    expect(s.list()).toEqual([]);
  });

  it('takes over the lock of a writer that died (same host, pid gone)', async () => {
    const s = await process();
    await s.getOrCreate('orphan', 'ES256');
    const { hostname } = await import('node:os');
    await writeFile(path.join(dir, '.orphan.lock'), JSON.stringify({ host: hostname(), pid: 2 ** 22 + 12345, nonce: 'dead' }));
    await expect(s.rotate('orphan')).resolves.toBeDefined();
    expect(await readdir(dir)).toEqual(['orphan.json']);
  });
});

describe('keyIds the store would not load again', () => {
  it.each(['.hidden', '.x.json', '..a'])('POST /keys/%s answers 400 invalid_key_id and writes nothing', async (keyId) => {
    const f = await makeFactory();
    try {
      const res = await request(f.app).post(`/keys/${encodeURIComponent(keyId)}`);
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toMatch(/application\/json/);
      expect(res.body.error.code).toBe('invalid_key_id');
      expect(await readdir(f.dir)).toEqual([]);
    } finally {
      await f.keystore.close();
      await f.cleanup();
    }
  });
});
