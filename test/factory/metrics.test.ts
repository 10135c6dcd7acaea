import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { makeFactory } from './harness.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function factory(env: Record<string, string> = {}) {
  const f = await makeFactory(env);
  cleanups.push(f.cleanup, () => f.keystore.close());
  return f;
}

/** The value of one sample line of the exposition text (undefined when absent). */
const sample = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe('GET /metrics', () => {
  it('counts tokens issued and verified by keyId, alg and outcome, failures by reason, and JWKS 200s and 304s', async () => {
    const f = await factory();
    const token = (await request(f.app).post('/issueToken/svc').send({ aud: 'x' }).expect(200)).text;
    // The second issuance reads the key from memory: not a store operation the histogram times.
    await request(f.app).post('/issueToken/svc').send({ aud: 'x' }).expect(200);
    await request(f.app).post('/verify/svc').send({ token, aud: 'x', sub: 'svc' }).expect(200);
    await request(f.app).post('/verify/svc').send({ token, aud: 'other', sub: 'svc' }).expect(403);
    const jwks = await request(f.app).get('/.well-known/jwks.json').expect(200);
    await request(f.app).get('/.well-known/jwks.json').set('If-None-Match', jwks.headers.etag!).expect(304);
    const res = await request(f.app).get('/metrics').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(sample(res.text, 'jwt_factory_tokens_issued_total{key_id="svc",alg="RS256",outcome="ok"}')).toBe(2);
    expect(sample(res.text, 'jwt_factory_tokens_verified_total{key_id="svc",alg="RS256",outcome="valid"}')).toBe(1);
    expect(sample(res.text, 'jwt_factory_tokens_verified_total{key_id="svc",alg="RS256",outcome="invalid"}')).toBe(1);
    expect(res.text).toMatch(/^jwt_factory_verification_failures_total\{reason="[a-z_]+"\} 1$/m);
    expect(sample(res.text, 'jwt_factory_jwks_requests_total{status="200"}')).toBe(1);
    expect(sample(res.text, 'jwt_factory_jwks_requests_total{status="304"}')).toBe(1);
    expect(sample(res.text, 'jwt_factory_store_operation_seconds_count{operation="get_or_create",outcome="ok"}')).toBe(1);
    // The verifications found the key the issuance had put in memory.
    expect(res.text).not.toMatch(/^jwt_factory_store_operation_seconds_count\{operation="get",/m);
    expect(res.text).toMatch(/^process_cpu_seconds_total /m);
  });

  it('shows per key the versions published, the signing key\'s age and the seconds to the next rotation, at the injected clock', async () => {
    const f = await factory({ ROTATION_INTERVAL: '3600', ROTATION_PUBLISH_AHEAD: '1260' });
    await request(f.app).post('/keys/aged').expect(200);
    f.time.advance(600_000);
    await request(f.app).post('/keys/aged/rotate').expect(200);
    const text = (await request(f.app).get('/metrics').expect(200)).text;
    expect(sample(text, 'jwt_factory_key_versions_published{key_id="aged"}')).toBe(2);
    expect(sample(text, 'jwt_factory_signing_key_age_seconds{key_id="aged"}')).toBe(600);
    // The new version signs 1260 s from now and the next is published 3600 − 1260 s after that.
    expect(sample(text, 'jwt_factory_next_rotation_seconds{key_id="aged"}')).toBe(3600);
    expect(sample(text, 'jwt_factory_key_store_ready')).toBe(1);
  });

  it('gives the first METRICS_KEY_LABELS keyIds by creation their own key_id and folds every later one into "(other)"', async () => {
    const f = await factory({ METRICS_KEY_LABELS: '2', ROTATION_INTERVAL: '3600', ROTATION_PUBLISH_AHEAD: '60' });
    for (const keyId of ['first', 'second', 'third', 'fourth']) {
      await request(f.app).post(`/issueToken/${keyId}`).send({}).expect(200);
      f.time.advance(1000);
    }
    // An old key used again stays labelled; a new one never pushes it out.
    await request(f.app).post('/issueToken/first').send({}).expect(200);
    await request(f.app).post('/issueToken/aaa-newest').send({}).expect(200);
    const text = (await request(f.app).get('/metrics').expect(200)).text;
    expect(sample(text, 'jwt_factory_tokens_issued_total{key_id="first",alg="RS256",outcome="ok"}')).toBe(2);
    expect(sample(text, 'jwt_factory_tokens_issued_total{key_id="second",alg="RS256",outcome="ok"}')).toBe(1);
    expect(sample(text, 'jwt_factory_tokens_issued_total{key_id="(other)",alg="RS256",outcome="ok"}')).toBe(3);
    for (const name of ['third', 'fourth', 'aaa-newest']) expect(text).not.toContain(`key_id="${name}"`);
    // Gauges fold the others: versions summed, the oldest signing age, the soonest rotation.
    expect(sample(text, 'jwt_factory_key_versions_published{key_id="(other)"}')).toBe(3);
    expect(sample(text, 'jwt_factory_signing_key_age_seconds{key_id="(other)"}')).toBe(2);
    expect(sample(text, 'jwt_factory_signing_key_age_seconds{key_id="first"}')).toBe(4);
    expect(sample(text, 'jwt_factory_next_rotation_seconds{key_id="(other)"}')).toBe(3600 - 60 - 2);
    const series = text.split('\n').filter((l) => l.startsWith('jwt_factory_key_versions_published{'));
    expect(series).toHaveLength(3);
  });

  it('keeps one registry per app: two apps in one process count apart', async () => {
    const [a, b] = await Promise.all([factory(), factory()]);
    await request(a.app).post('/issueToken/one').send({}).expect(200);
    const textB = (await request(b.app).get('/metrics').expect(200)).text;
    expect(textB).not.toContain('key_id="one"');
  });
});
