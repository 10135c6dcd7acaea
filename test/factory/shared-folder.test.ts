import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProcess, type Started } from '../helpers/process.js';

/** Real factory processes on one KEYS_DIR: two replicas on a shared volume, and WORKERS=2. */

let dir: string;
const started: Started[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'shared-keys-'));
});
afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await rm(dir, { recursive: true, force: true });
}, 30_000);

async function factory(env: Record<string, string> = {}): Promise<Started> {
// 20 rotations in a row keep all 21 versions published (each may have signed tokens): above the default cap of 5.
  const p = await startProcess('jwt-factory/main.ts', { env: { PORT: '0', HOST: '127.0.0.1', KEYS_DIR: dir, MAX_KEY_VERSIONS: '25', ...env } });
  started.push(p);
  return p;
}

const post = (p: Started, route: string) => fetch(`http://127.0.0.1:${p.port}${route}`, { method: 'POST' });

/** Races two rotations per trial through `targets` and returns the kids acknowledged; both answers of a trial must agree. */
async function race(targets: [Started, Started], keyId: string, trials: number): Promise<string[]> {
  expect((await post(targets[0], `/keys/${keyId}?alg=ES256`)).status).toBe(200);
  // The race is between processes that hold the key: a process that has not yet heard of a key
  // created a moment ago reads it when the rotation arrives, and may find the other's rotation done.
  for (let i = 0; i < 4; i += 1) expect((await fetch(`http://127.0.0.1:${targets[i % 2]!.port}/keys/${keyId}`)).status).toBe(200);
  const acknowledged: string[] = [];
  for (let trial = 0; trial < trials; trial += 1) {
    const answers = await Promise.all(targets.map((p) => post(p, `/keys/${keyId}/rotate?publishAhead=0`)));
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    const [ka, kb] = (await Promise.all(answers.map((r) => r.json()))) as Array<{ kid: string }>;
    // Two rotations that overlap answer one kid. On a loaded machine the second may only arrive
    // once the first is done and known everywhere: then it is a rotation of its own, and both kids
    // are acknowledged (the check below is that none of them is lost).
    acknowledged.push(...new Set([ka!.kid, kb!.kid]));
  }
  return acknowledged;
}

const kidsOnDisk = async (keyId: string) => (JSON.parse(await readFile(path.join(dir, `${keyId}.json`), 'utf8')) as { versions: Array<{ kid: string }> }).versions.map((v) => v.kid);

describe('one KEYS_DIR shared by several factory processes', () => {
  it('two replicas rotating at once: one wins, both answer its kid, 0 of 20 acknowledged kids lost', async () => {
    const [a, b] = await Promise.all([factory(), factory()]);
    const acknowledged = await race([a, b], 'replicas', 20);
    const stored = await kidsOnDisk('replicas');
    expect(acknowledged.filter((kid) => !stored.includes(kid))).toEqual([]);
    const jwks = (await (await fetch(`http://127.0.0.1:${b.port}/keys/replicas/jwks.json`)).json()) as { keys: Array<{ kid: string }> };
    expect(acknowledged.filter((kid) => !jwks.keys.some((k) => k.kid === kid))).toEqual([]);
  }, 60_000);

  it('WORKERS=2 rotating at once: 0 of 20 acknowledged kids lost', async () => {
    const w = await factory({ WORKERS: '2' });
    const acknowledged = await race([w, w], 'workers', 20);
    const stored = await kidsOnDisk('workers');
    expect(acknowledged.filter((kid) => !stored.includes(kid))).toEqual([]);
  }, 60_000);
});
