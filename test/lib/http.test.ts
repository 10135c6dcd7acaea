import { gzipSync } from 'node:zlib';
import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Express } from 'express';
import { MAX_JSON_DEPTH, errorMiddleware } from '../../lib/http.js';
import { silentLogger } from '../../lib/logger.js';
import { makeFactory } from '../factory/harness.js';

let app: Express;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  const f = await makeFactory({ ALGORITHM: 'ES256' });
  app = f.app;
  cleanup = f.cleanup;
});
afterAll(() => cleanup());

/** Asserts a JSON error answer with this status and code. */
function expectError(res: request.Response, status: number, code: string): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.body.error.code).toBe(code);
}

describe('percent-decoding of path parameters', () => {
  it.each([
    ['GET', '/keys/%ff%fe'],
    ['POST', '/verify/%C0%AE%C0%AE'],
    ['POST', '/issueToken/%zz'],
    ['GET', '/keys/%e2%82/jwks.json'],
    ['GET', '/utils/publicKey/%'],
  ])('%s %s answers 400 invalid_path', async (method, path) => {
    const res = await (method === 'GET' ? request(app).get(path) : request(app).post(path).send({}));
    expectError(res, 400, 'invalid_path');
    expect(res.body.error.message).toMatch(/percent-encoding/);
  });
});

describe('request bodies', () => {
  it('a body whose Content-Encoding says gzip but is not answers 400 malformed_body_encoding, even on /healthz', async () => {
    for (const path of ['/healthz', '/issueToken/enc']) {
      const res = await request(app).post(path).set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').send('{"aud":"x"}');
      expectError(res, 400, 'malformed_body_encoding');
    }
    expectError(await request(app).get('/healthz').set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').send('not gzip'), 400, 'malformed_body_encoding');
  });

  it('a body that lies about deflate answers 400 malformed_body_encoding; real gzip is read', async () => {
    expectError(await request(app).post('/issueToken/enc').set('Content-Type', 'application/json').set('Content-Encoding', 'deflate').send('{"aud":"x"}'), 400, 'malformed_body_encoding');
    const res = await request(app).post('/issueToken/enc?format=json').set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').serialize((b: Buffer) => b as unknown as string).send(gzipSync('{"aud":"zipped"}'));
    expect(res.status).toBe(200);
    expect(JSON.parse(Buffer.from(res.body.token.split('.')[1], 'base64url').toString()).aud).toBe('zipped');
  });

  it('an unknown Content-Encoding or charset answers 415 unsupported_encoding', async () => {
    expectError(await request(app).post('/issueToken/enc').set('Content-Type', 'application/json').set('Content-Encoding', 'x-bogus').send('{}'), 415, 'unsupported_encoding');
    expectError(await request(app).post('/issueToken/enc').set('Content-Type', 'application/json; charset=klingon').send('{}'), 415, 'unsupported_encoding');
  });

  it(`JSON nested deeper than ${MAX_JSON_DEPTH} levels answers 400 json_too_deep; brackets inside strings do not count`, async () => {
    // Both under BODY_LIMIT (100kb): the depth, not the size, refuses them.
    for (const deep of [`${'['.repeat(20_000)}${']'.repeat(20_000)}`, `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`]) {
      const res = await request(app).post('/issueToken/enc').set('Content-Type', 'application/json').send(deep);
      expectError(res, 400, 'json_too_deep');
    }
    const nested = (depth: number) => `{"aud":"x","n":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
    expect((await request(app).post('/issueToken/enc').set('Content-Type', 'application/json').send(nested(MAX_JSON_DEPTH))).status).toBe(200);
    expectError(await request(app).post('/issueToken/enc').set('Content-Type', 'application/json').send(nested(MAX_JSON_DEPTH + 1)), 400, 'json_too_deep');
    const res = await request(app).post('/issueToken/enc').set('Content-Type', 'application/json').send(JSON.stringify({ aud: 'x', s: '[{'.repeat(500), q: 'a\\"[[[' }));
    expect(res.status).toBe(200);
  });

  it('malformed JSON still answers 400 malformed_json', async () => {
    expectError(await request(app).post('/issueToken/enc').set('Content-Type', 'application/json').send('{"aud":'), 400, 'malformed_json');
  });
});

describe('the error mapping is the same for form bodies', () => {
  const formApp = express();
  // body-parser 2 takes `depth` (its types lag behind).
  formApp.use(express.urlencoded({ extended: true, parameterLimit: 5, depth: 3, limit: '1kb' } as Parameters<typeof express.urlencoded>[0]));
  formApp.post('/form', (req, res) => {
    res.json({ got: req.body });
  });
  formApp.use(errorMiddleware(silentLogger()));
  const form = (body: string | Buffer, headers: Record<string, string> = {}) =>
    request(formApp).post('/form').set({ 'Content-Type': 'application/x-www-form-urlencoded', ...headers }).send(body);

  it('too many parameters answer 413 body_too_large, a nesting past the depth 400 malformed_form', async () => {
    expectError(await form('a=1&b=2&c=3&d=4&e=5&f=6&g=7'), 413, 'body_too_large');
    expectError(await form('a[b][c][d][e][f]=1'), 400, 'malformed_form');
  });

  it('a lying gzip answers 400 malformed_body_encoding, a bad charset 415, an oversize form 413', async () => {
    expectError(await form('a=1', { 'Content-Encoding': 'gzip' }), 400, 'malformed_body_encoding');
    expectError(await form('a=1', { 'Content-Type': 'application/x-www-form-urlencoded; charset=klingon' }), 415, 'unsupported_encoding');
    expectError(await form(`a=${'x'.repeat(2000)}`), 413, 'body_too_large');
  });

  it('malformed percent-encoding in a form value is kept as text, as qs does, not a 500', async () => {
    const res = await form('a=%ff&b=%zz');
    expect(res.status).toBe(200);
    expect(res.body.got).toEqual({ a: '%ff', b: '%zz' });
  });
});
