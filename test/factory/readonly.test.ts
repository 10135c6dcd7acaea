import { readdir } from 'node:fs/promises';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { makeFactory } from './harness.js';

/**
 * A key folder that cannot be written (a read-only Secret mount in Kubernetes: EROFS; a full
 * disk: ENOSPC). Root ignores file permissions, so the failure is injected at the one place
 * the key store writes: lib/files.ts writeFileAtomic, real until `failWith` is set.
 */
const state = vi.hoisted(() => ({ failWith: undefined as string | undefined }));
vi.mock('../../lib/files.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../lib/files.js')>();
  return {
    ...real,
    writeFileAtomic: async (...args: Parameters<typeof real.writeFileAtomic>) => {
      if (state.failWith) throw Object.assign(new Error(`${state.failWith}: cannot write ${args[0]}`), { code: state.failWith });
      return real.writeFileAtomic(...args);
    },
  };
});

let f: Awaited<ReturnType<typeof makeFactory>>;
let kid: string;
beforeAll(async () => {
  f = await makeFactory();
  kid = (await request(f.app).post('/keys/svc').expect(200)).body.kid;
});
afterAll(() => f.cleanup());

describe('a key folder that cannot be written', () => {
  for (const code of ['EROFS', 'ENOSPC', 'EACCES']) {
    it(`${code}: creating a key answers 503 key_store_not_writable and keeps nothing half-made`, async () => {
      state.failWith = code;
      try {
        const res = await request(f.app).post('/keys/newkey').expect(503);
        expect(res.body.error).toMatchObject({ code: 'key_store_not_writable', reason: code });
        expect(res.body.error.message).toContain('KEYS_DIR');
        expect(res.body.error.message).not.toContain(f.dir);
      } finally {
        state.failWith = undefined;
      }
      expect((await request(f.app).get('/utils/keys').expect(200)).body).toEqual(['svc']);
      expect(await readdir(f.dir)).toEqual(['svc.json']);
    });
  }

  it('a rotation that cannot be saved changes nothing: the old key still signs and is the only one published', async () => {
    state.failWith = 'EROFS';
    try {
      const res = await request(f.app).post('/keys/svc/rotate').expect(503);
      expect(res.body.error.code).toBe('key_store_not_writable');
      const token = (await request(f.app).post('/issueToken/svc').send({ aud: 'x' }).expect(200)).text;
      expect((await request(f.app).post('/verify/svc').send({ token, aud: 'x', sub: 'svc' }).expect(200)).body.valid).toBe(true);
      const jwks = (await request(f.app).get('/keys/svc/jwks.json').expect(200)).body;
      expect(jwks.keys.map((k: { kid: string }) => k.kid)).toEqual([kid]);
    } finally {
      state.failWith = undefined;
    }
  });

  it('another I/O failure stays a 500 without details, and the factory keeps serving', async () => {
    state.failWith = 'EIO';
    try {
      const res = await request(f.app).post('/keys/other').expect(500);
      expect(res.body.error).toEqual({ code: 'internal_error', message: 'Internal error' });
    } finally {
      state.failWith = undefined;
    }
    expect((await request(f.app).post('/keys/other').expect(200)).body.created).toBe(true);
  });
});
