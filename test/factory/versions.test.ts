import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeFactory } from './harness.js';

type Factory = Awaited<ReturnType<typeof makeFactory>>;
let f: Factory;

beforeAll(async () => {
  f = await makeFactory({ MAX_TOKEN_TTL: '1800', TOKEN_TTL: '300', CLOCK_TOLERANCE: '60' });
});
afterAll(() => f.cleanup());

const versions = async (keyId: string) => {
  const res = await request(f.app).get(`/keys/${keyId}`).expect(200);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  return res.body.versions as Array<Record<string, unknown>>;
};

describe('GET /keys/:keyId versions', () => {
  it('lists a new key as the one signing version, activated at its creation, never retiring', async () => {
    const created = (await request(f.app).post('/keys/fresh?alg=ES256').expect(200)).body;
    const now = f.time.clock().toISOString();
    expect(await versions('fresh')).toEqual([{ kid: created.kid, alg: 'ES256', createdAt: now, activateAt: now, retireAt: null, state: 'signing' }]);
  });

  it('shows a key published ahead as published until its activateAt, then signing while the old one verifies until it retires', async () => {
    const before = (await request(f.app).post('/keys/ahead?alg=ES256').expect(200)).body;
    const rotatedAt = f.time.clock().getTime();
    const rotated = (await request(f.app).post('/keys/ahead/rotate?publishAhead=1200').expect(200)).body;
    const activateAt = new Date(rotatedAt + 1_200_000).toISOString();
    const retireAt = new Date(rotatedAt + 1_200_000 + 1_860_000).toISOString();

    expect((await versions('ahead')).map((v) => [v.kid, v.state, v.activateAt, v.retireAt])).toEqual([
      [rotated.kid, 'published', activateAt, null],
      [before.kid, 'signing', new Date(rotatedAt).toISOString(), retireAt],
    ]);

    f.time.set(new Date(rotatedAt + 1_200_000 - 1));
    expect((await versions('ahead')).map((v) => v.state)).toEqual(['published', 'signing']);
    f.time.set(new Date(rotatedAt + 1_200_000));
    expect((await versions('ahead')).map((v) => v.state)).toEqual(['signing', 'verifying']);
    f.time.set(new Date(rotatedAt + 1_200_000 + 1_860_000));
    expect((await versions('ahead')).map((v) => [v.kid, v.state])).toEqual([[rotated.kid, 'signing']]);
  });
});
