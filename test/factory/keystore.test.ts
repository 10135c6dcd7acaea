import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { verificationKeys } from '../../jwt-factory/keys.js';
import { createKeyStore } from '../../jwt-factory/keystore.js';
import { createKeySealer, type KeySealer } from '../../jwt-factory/store/encryption.js';
import { issueToken, verifyToken } from '../../jwt-factory/tokens.js';
import { buildJwks, createJwksCache } from '../../jwt-factory/jwks.js';
import { manualClock } from './harness.js';

const MAX_TTL = 86_400;
const TOLERANCE = 60;
const RETIRE = MAX_TTL + TOLERANCE;

let dir: string;
let lines: string[];
const time = manualClock(new Date('2026-03-01T12:00:00.000Z'));

/** A store over `dir` whose log lines the test can read. */
function store(sealer?: KeySealer) {
  lines = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return createKeyStore({ dir, clock: time.clock, logger: pino({ level: 'info' }, sink), retireAfterSeconds: RETIRE, sealer });
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'keystore-test-'));
  time.set(new Date('2026-03-01T12:00:00.000Z'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('persistence', () => {
  it('writes <keyId>.json with mode 0600 and no temp file left behind', async () => {
    const s = store();
    await s.load();
    await s.getOrCreate('svc');
    expect(await readdir(dir)).toEqual(['svc.json']);
    expect((await stat(path.join(dir, 'svc.json'))).mode & 0o777).toBe(0o600);
    await s.rotate('svc');
    expect(await readdir(dir)).toEqual(['svc.json']);
    expect((await stat(path.join(dir, 'svc.json'))).mode & 0o777).toBe(0o600);
  });

  it('loads every key again in a new store, same kid and alg', async () => {
    const a = store();
    await a.load();
    const { entry } = await a.getOrCreate('es', 'ES384');
    const b = store();
    expect(await b.load()).toEqual({ loaded: 1, skipped: [] });
    const again = await b.get('es');
    expect(again).toMatchObject({ alg: 'ES384', current: { kid: entry.current.kid } });
  });

  it("loads the original sample's <keyId>-private.pem / -public.pem (PKCS#1) as RS256", async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(path.join(dir, 'legacy-private.pem'), privateKey.export({ format: 'pem', type: 'pkcs1' }));
    await writeFile(path.join(dir, 'legacy-public.pem'), publicKey.export({ format: 'pem', type: 'pkcs1' }));
    expect((await readFile(path.join(dir, 'legacy-private.pem'), 'utf8')).startsWith('-----BEGIN RSA PRIVATE KEY-----')).toBe(true);
    const s = store();
    expect((await s.load()).loaded).toBe(1);
    const entry = (await s.get('legacy'))!;
    expect(entry.alg).toBe('RS256');
    const issued = await issueToken(entry, { aud: 'x' }, { issuer: 'i', ttl: 60, now: time.clock() });
    await expect(verifyToken(entry, issued.token, { issuer: 'i', audience: 'x', now: time.clock() })).resolves.toMatchObject({ kid: entry.current.kid });
  });

  it('logs a corrupt or unreadable key file by name and skips it without stopping the load', async () => {
    const good = store();
    await good.load();
    await good.getOrCreate('good');
    // A damaged key file: JSON.parse would quote the text around the damage, the log must not.
    const goodText = await readFile(path.join(dir, 'good.json'), 'utf8');
    await writeFile(path.join(dir, 'broken.json'), goodText.replace('"d": "', '"d": X"'));
    await writeFile(path.join(dir, 'wrongkid.json'), (await readFile(path.join(dir, 'good.json'), 'utf8')).replace('"keyId": "good"', '"keyId": "wrongkid"').replace(/"kid": "[^"]+"/, '"kid": "forged"'));
    await writeFile(path.join(dir, 'badpem-private.pem'), '-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n');
    const s = store();
    const result = await s.load();
    expect(result.loaded).toBe(1);
    expect(result.skipped.sort()).toEqual(['badpem-private.pem', 'broken.json', 'wrongkid.json']);
    for (const file of result.skipped) expect(lines.join('')).toContain(file);
    const secret = JSON.parse(goodText).versions[0].jwk.d as string;
    expect(lines.join('')).not.toContain(secret.slice(0, 12));
    expect(lines.join('')).not.toMatch(/PRIVATE KEY|"d":|\\"d\\"/);
  });
});

describe('dump', () => {
  it('rewrites a key file that went missing and leaves existing files alone', async () => {
    const s = store();
    await s.load();
    await s.getOrCreate('a');
    await s.getOrCreate('b');
    const before = await readFile(path.join(dir, 'b.json'), 'utf8');
    await rm(path.join(dir, 'a.json'));
    expect(await s.dump()).toEqual(['a', 'b']);
    expect((await stat(path.join(dir, 'a.json'))).mode & 0o777).toBe(0o600);
    expect(await readFile(path.join(dir, 'b.json'), 'utf8')).toBe(before);
  });
});

describe('creation', () => {
  it('returns an existing key and never replaces it', async () => {
    const s = store();
    await s.load();
    const first = await s.getOrCreate('svc');
    const before = await readFile(path.join(dir, 'svc.json'), 'utf8');
    const second = await s.getOrCreate('svc', 'RS256');
    expect(second).toMatchObject({ created: false, entry: { current: { kid: first.entry.current.kid } } });
    expect(await readFile(path.join(dir, 'svc.json'), 'utf8')).toBe(before);
  });

  it('ends with one key when two stores (two workers) create the same keyId at once', async () => {
    const a = store();
    const b = store();
    await Promise.all([a.load(), b.load()]);
    const [ra, rb] = await Promise.all([a.getOrCreate('shared'), b.getOrCreate('shared')]);
    expect(ra.entry.current.kid).toBe(rb.entry.current.kid);
    expect([ra.created, rb.created].filter(Boolean)).toHaveLength(1);
  });

  it('reloads a rotation another store made, and an unchanged file changes nothing', async () => {
    const a = store();
    const b = store();
    await Promise.all([a.load(), b.load()]);
    await a.getOrCreate('moving');
    await b.get('moving');
    const revision = b.revision();
    await b.reload('moving');
    expect(b.revision()).toBe(revision);
    const rotated = (await a.rotate('moving'))!;
    expect((await b.reload('moving'))?.current.kid).toBe(rotated.current.kid);
    expect(b.revision()).toBeGreaterThan(revision);
  });

  it('a key another store created and this one finds through getOrCreate moves the revision (the JWKS cache hears of it)', async () => {
    const a = store();
    const b = store();
    await Promise.all([a.load(), b.load()]);
    // Taken before the create: b may hear of it from its folder watch before it asks.
    const revision = b.revision();
    const { entry } = await a.getOrCreate('found');
    const found = await b.getOrCreate('found');
    expect(found).toMatchObject({ created: false });
    expect(found.entry.current.kid).toBe(entry.current.kid);
    expect(b.revision()).toBeGreaterThan(revision);
    expect(b.size()).toBe(1);
  });

  it('reload picks up a second rotation too, and an unchanged file keeps the very entry it had', async () => {
    const a = store();
    const b = store();
    await Promise.all([a.load(), b.load()]);
    await a.getOrCreate('twice');
    const first = (await b.reload('twice'))!;
    expect(await b.reload('twice')).toBe(first);
    const r1 = (await a.rotate('twice'))!;
    expect((await b.reload('twice'))?.current.kid).toBe(r1.current.kid);
    const r2 = (await a.rotate('twice'))!;
    expect((await b.reload('twice'))?.current.kid).toBe(r2.current.kid);
  });

  it('finds on disk a key another store created after load', async () => {
    const a = store();
    const b = store();
    await Promise.all([a.load(), b.load()]);
    const { entry } = await a.getOrCreate('late');
    expect((await b.get('late'))?.current.kid).toBe(entry.current.kid);
    expect(await b.get('never')).toBeUndefined();
  });

  it('gives HS256 keys a random kid that is not derived from the secret and survives a reload', async () => {
    const s = store();
    await s.load();
    const { entry } = await s.getOrCreate('h', 'HS256');
    expect(entry.current.kid).toMatch(/^[\w-]{22}$/);
    expect(entry.current.publicJwk).toBeUndefined();
    const reloaded = store();
    await reloaded.load();
    expect((await reloaded.get('h'))?.current.kid).toBe(entry.current.kid);
  });
});

describe('rotation at exact clock boundaries', () => {
  it('signs with the new key; the old key verifies and stays in the JWKS until retireAt, then disappears', async () => {
    const s = store();
    await s.load();
    const { entry: before } = await s.getOrCreate('rot');
    // The longest token the old key may have signed: MAX_TOKEN_TTL, issued just before rotating.
    const old = await issueToken(before, { aud: 'a' }, { issuer: 'i', ttl: MAX_TTL, now: time.clock() });
    const rotatedAt = time.clock().getTime();
    const after = (await s.rotate('rot'))!;
    expect(after.current.kid).not.toBe(before.current.kid);
    const retireAt = rotatedAt + RETIRE * 1000;
    expect(after.previous[0]!.retireAt!.getTime()).toBe(retireAt);

    const fresh = await issueToken(after, { aud: 'a' }, { issuer: 'i', ttl: 60, now: time.clock() });
    expect(fresh.kid).toBe(after.current.kid);
    const opts = (now: Date) => ({ issuer: 'i', audience: 'a', now, clockTolerance: TOLERANCE });

    // One millisecond before retirement: both kids published, the old token still verifies (within skew).
    const justBefore = new Date(retireAt - 1);
    expect(JSON.parse(buildJwks([after], justBefore).body).keys.map((k: { kid: string }) => k.kid)).toEqual([after.current.kid, before.current.kid]);
    expect(verificationKeys(after, justBefore)).toHaveLength(2);
    await expect(verifyToken(after, old.token, opts(justBefore))).resolves.toMatchObject({ kid: before.current.kid });

    // At retireAt: the old key is gone from JWKS and verification.
    const atRetire = new Date(retireAt);
    expect(JSON.parse(buildJwks([after], atRetire).body).keys.map((k: { kid: string }) => k.kid)).toEqual([after.current.kid]);
    await expect(verifyToken(after, old.token, opts(atRetire))).rejects.toMatchObject({ code: 'unknown_kid' });
    expect(decodeJwt(old.token).exp! * 1000 + TOLERANCE * 1000).toBe(retireAt);
  });

  it('publishes a key ahead: in the JWKS at once, signing only from activateAt; the old key retires a token lifetime after that', async () => {
    const s = store();
    await s.load();
    const { entry: before } = await s.getOrCreate('ahead');
    const rotatedAt = time.clock().getTime();
    const after = (await s.rotate('ahead', 1200))!;
    const activateAt = rotatedAt + 1_200_000;
    expect(after.current.activateAt?.getTime()).toBe(activateAt);
    expect(after.previous[0]!.retireAt?.getTime()).toBe(activateAt + RETIRE * 1000);
    const kids = (at: number) => JSON.parse(buildJwks([after], new Date(at)).body).keys.map((k: { kid: string }) => k.kid);
    const signerAt = async (at: number) => (await issueToken(after, {}, { issuer: 'i', ttl: 60, now: new Date(at) })).kid;

    expect(kids(rotatedAt)).toEqual([after.current.kid, before.current.kid]);
    expect(await signerAt(activateAt - 1)).toBe(before.current.kid);
    expect(await signerAt(activateAt)).toBe(after.current.kid);
    expect(kids(activateAt + RETIRE * 1000 - 1)).toEqual([after.current.kid, before.current.kid]);
    expect(kids(activateAt + RETIRE * 1000)).toEqual([after.current.kid]);

    // The schedule survives a restart.
    const reloaded = store();
    await reloaded.load();
    const again = (await reloaded.get('ahead'))!;
    expect(again.current.activateAt?.getTime()).toBe(activateAt);
    expect(await issueToken(again, {}, { issuer: 'i', ttl: 60, now: new Date(activateAt - 1) }).then((t) => t.kid)).toBe(before.current.kid);
  });

  it('persists retireAt: a new store keeps verifying the old key until then', async () => {
    const s = store();
    await s.load();
    const { entry } = await s.getOrCreate('rot2');
    const token = (await issueToken(entry, {}, { issuer: 'i', ttl: 600, now: time.clock() })).token;
    await s.rotate('rot2');
    time.advance(60_000);
    const reloaded = store();
    await reloaded.load();
    const again = (await reloaded.get('rot2'))!;
    await expect(verifyToken(again, token, { issuer: 'i', now: time.clock() })).resolves.toMatchObject({ kid: entry.current.kid });
    const file = JSON.parse(await readFile(path.join(dir, 'rot2.json'), 'utf8'));
    expect(file.versions).toHaveLength(2);
    expect(file.versions[1].retireAt).toBe(new Date(Date.parse('2026-03-01T12:00:00.000Z') + RETIRE * 1000).toISOString());
  });

  it('drops retired versions from the file at the next rotation and answers undefined for an unknown keyId', async () => {
    const s = store();
    await s.load();
    await s.getOrCreate('rot3');
    await s.rotate('rot3');
    time.advance(RETIRE * 1000);
    const entry = (await s.rotate('rot3'))!;
    expect(entry.previous).toHaveLength(1);
    expect(await s.rotate('missing')).toBeUndefined();
  });
});

describe('JWKS cache', () => {
  const kids = (doc: { body: string }) => (JSON.parse(doc.body) as { keys: { kid: string }[] }).keys.map((k) => k.kid);

  it('serves the same document until a key changes or a rotated-out key retires, without listing the store on a hit', async () => {
    const s = store();
    await s.load();
    const { entry: before } = await s.getOrCreate('cached');
    let listed = 0;
    const counting = {
      ...s,
      entries: () => {
        listed += 1;
        return s.entries();
      },
    };
    const cache = createJwksCache(counting, time.clock);
    const first = cache.all();
    expect(cache.all()).toBe(first);
    expect(listed).toBe(1);

    const rotatedAt = time.clock().getTime();
    const after = (await s.rotate('cached'))!;
    const rotated = cache.all();
    expect(rotated.etag).not.toBe(first.etag);
    expect(kids(rotated)).toEqual([after.current.kid, before.current.kid]);
    expect(kids(cache.forEntry(after))).toEqual([after.current.kid, before.current.kid]);

    time.set(new Date(rotatedAt + RETIRE * 1000 - 1));
    expect(cache.all()).toBe(rotated);
    time.set(new Date(rotatedAt + RETIRE * 1000));
    expect(kids(cache.all())).toEqual([after.current.kid]);
    expect(kids(cache.forEntry(after))).toEqual([after.current.kid]);
    expect(listed).toBe(3);
  });
});

describe('encryption at rest (KEY_ENCRYPTION_KEY)', () => {
  it('writes sealed versions with no private member, loads them back with the key and skips them without it', async () => {
    const sealer = createKeySealer(randomBytes(32));
    const a = store(sealer);
    await a.load();
    const { entry } = await a.getOrCreate('sealed', 'RS256');
    await a.rotate('sealed');
    const text = await readFile(path.join(dir, 'sealed.json'), 'utf8');
    expect(text).toContain('"sealed": "jfk1.');
    for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'jwk']) expect(text).not.toContain(`"${member}":`);
    const b = store(sealer);
    expect(await b.load()).toEqual({ loaded: 1, skipped: [] });
    expect((await b.get('sealed'))!.previous[0]!.kid).toBe(entry.current.kid);
    const c = store();
    expect(await c.load()).toEqual({ loaded: 0, skipped: ['sealed.json'] });
    expect(lines.join('')).toContain('set KEY_ENCRYPTION_KEY');
  });

  it('still loads plain files written before the key was set', async () => {
    const plain = store();
    await plain.load();
    const { entry } = await plain.getOrCreate('plain');
    const sealedStore = store(createKeySealer(randomBytes(32)));
    await sealedStore.load();
    expect((await sealedStore.get('plain'))!.current.kid).toBe(entry.current.kid);
  });
});
