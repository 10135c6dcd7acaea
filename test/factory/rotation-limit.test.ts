import { readFile } from 'node:fs/promises';
import path from 'node:path';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeFactory } from './harness.js';

const RETIRE_MS = (86_400 + 60) * 1000;

let f: Awaited<ReturnType<typeof makeFactory>>;
beforeEach(async () => {
  // The cap is counted on rotations that sign at once (a compromised key's, ?publishAhead=0, here the default);
  // the last test adds versions published ahead.
  f = await makeFactory({ MAX_KEY_VERSIONS: '3', ALGORITHM: 'ES256', ROTATION_PUBLISH_AHEAD: '0' });
});
afterEach(() => f.cleanup());

const rotate = (keyId: string, query = '') => request(f.app).post(`/keys/${keyId}/rotate${query}`);
const publishedKids = async (keyId: string) => (await request(f.app).get(`/keys/${keyId}/jwks.json`)).body.keys.map((k: { kid: string }) => k.kid);

describe('MAX_KEY_VERSIONS', () => {
  it('a rotation past the cap answers 429 rotation_limit_reached with Retry-After until the oldest retires, and changes nothing', async () => {
    await request(f.app).post('/keys/capped').expect(200);
    await rotate('capped').expect(200);
    f.time.advance(1000);
    await rotate('capped').expect(200);
    const kids = await publishedKids('capped');
    expect(kids).toHaveLength(3);
    const file = await readFile(path.join(f.dir, 'capped.json'), 'utf8');
    f.time.advance(1000);
    const refused = await rotate('capped');
    expect(refused.status).toBe(429);
    expect(refused.headers['content-type']).toMatch(/^application\/json/);
    expect(refused.body.error).toMatchObject({ code: 'rotation_limit_reached', maxVersions: 3, oldestKid: kids[2] });
    // The oldest stopped signing at the first rotation (2 s ago): its tokens stay valid a token lifetime + skew after that.
    expect(Number(refused.headers['retry-after'])).toBe(RETIRE_MS / 1000 - 2);
    expect(refused.body.error.message).toContain('MAX_KEY_VERSIONS');
    expect(await publishedKids('capped')).toEqual(kids);
    expect(await readFile(path.join(f.dir, 'capped.json'), 'utf8')).toBe(file);
  });

  it('rotates again once the oldest version retired, and keeps at most the cap published', async () => {
    await request(f.app).post('/keys/later').expect(200);
    await rotate('later').expect(200);
    f.time.advance(1000);
    await rotate('later').expect(200);
    await rotate('later').expect(429);
    // The first rotated-out version retires now; the second one a second later.
    f.time.advance(RETIRE_MS - 1000);
    const rotated = await rotate('later').expect(200);
    expect(rotated.body.previous).toHaveLength(2);
    expect(await publishedKids('later')).toHaveLength(3);
  });

  it('at the cap, a version published ahead that a newer one overtakes goes first: it never signed a token', async () => {
    await request(f.app).post('/keys/ahead').expect(200);
    await rotate('ahead').expect(200);
    const pending = (await rotate('ahead', '?publishAhead=1200').expect(200)).body.kid;
    // The new key signs at once, before the pending one would have: the pending one can never sign.
    const now = (await rotate('ahead').expect(200)).body.kid;
    const kids = await publishedKids('ahead');
    expect(kids).toHaveLength(3);
    expect(kids[0]).toBe(now);
    expect(kids).not.toContain(pending);
  });
});
