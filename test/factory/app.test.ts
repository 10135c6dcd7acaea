import { createPublicKey, createHmac } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import request from 'supertest';
import jsonwebtoken from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { base64url, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { makeFactory } from './harness.js';
import { createApp } from '../../jwt-factory/http.js';
import { createKeyStore } from '../../jwt-factory/keystore.js';
import { silentLogger } from '../../lib/logger.js';
import { VARIANTS, VERDICTS, WRONG_AUDIENCE } from '../../jwt-factory/variants.js';

type Factory = Awaited<ReturnType<typeof makeFactory>>;
let f: Factory;

const issue = (keyId: string, claims: object = {}, query = '') =>
  request(f.app).post(`/issueToken/${keyId}${query}`).send(claims);
const verify = (keyId: string, body: object) => request(f.app).post(`/verify/${keyId}`).send(body);
const json = (res: request.Response) => {
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  return res.body as Record<string, any>;
};

beforeAll(async () => {
  f = await makeFactory();
  await request(f.app).post('/keys/svc').expect(200);
});
afterAll(() => f.cleanup());

describe('GET|POST /keys/:keyId', () => {
  it('creates a key once and answers base64 of the public PEM, kid and alg', async () => {
    const first = json(await request(f.app).get('/keys/alpha').expect(200));
    const pem = Buffer.from(first.publicKey, 'base64').toString();
    expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(first).toMatchObject({ keyId: 'alpha', alg: 'RS256', created: true });
    const again = json(await request(f.app).post('/keys/alpha').expect(200));
    expect(again).toMatchObject({ kid: first.kid, publicKey: first.publicKey, created: false });
  });

  it('uses the RFC 7638 thumbprint of the public key as kid', async () => {
    const body = json(await request(f.app).get('/keys/alpha').expect(200));
    const jwk = createPublicKey(Buffer.from(body.publicKey, 'base64').toString()).export({ format: 'jwk' });
    const { calculateJwkThumbprint } = await import('jose');
    expect(body.kid).toBe(await calculateJwkThumbprint(jwk as JWK));
  });

  it.each(['ES256', 'ES384', 'EdDSA', 'PS256', 'RS384', 'RS512'])('creates a %s key with ?alg= and signs verifiable tokens with it', async (alg) => {
    const keyId = `k-${alg.toLowerCase()}`;
    expect(json(await request(f.app).get(`/keys/${keyId}?alg=${alg}`).expect(200)).alg).toBe(alg);
    const token = (await issue(keyId, { aud: 'x' }).expect(200)).text;
    expect(decodeProtectedHeader(token).alg).toBe(alg);
    expect(json(await verify(keyId, { token, aud: 'x', sub: keyId }).expect(200)).valid).toBe(true);
  });

  it('serves the keys of a comma-separated keyId list as one JWKS, and no others; keys not made are left out, none is 404, too many 400', async () => {
    const a = json(await request(f.app).post('/keys/multi-a?alg=ES256').expect(200));
    const b = json(await request(f.app).post('/keys/multi-b?alg=ES256').expect(200));
    await request(f.app).post('/keys/multi-c?alg=ES256').expect(200);
    const res = await request(f.app).get('/keys/multi-a,multi-b/jwks.json').expect(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(json(res).keys.map((k: JWK) => k.kid).sort()).toEqual([a.kid, b.kid].sort());
    expect(json(await request(f.app).get('/keys/multi-a,nope/jwks.json').expect(200)).keys.map((k: JWK) => k.kid)).toEqual([a.kid]);
    const unknown = await request(f.app).get('/keys/nope,nada/jwks.json').expect(404);
    expect(json(unknown).error.code).toBe('key_not_found');
    const many = await request(f.app).get(`/keys/${Array.from({ length: 9 }, (_, i) => `k${i}`).join(',')}/jwks.json`).expect(400);
    expect(json(many).error.code).toBe('too_many_key_ids');
  });

  it('never reveals an HS256 secret: no publicKey, not in the JWKS', async () => {
    const body = json(await request(f.app).post('/keys/hmac?alg=HS256').expect(200));
    expect(body).toEqual({
      keyId: 'hmac',
      kid: body.kid,
      alg: 'HS256',
      created: true,
      versions: [expect.objectContaining({ kid: body.kid, state: 'signing' })],
      rotation: { interval: 0, publishAhead: 1260, nextAt: null },
    });
    const jwks = json(await request(f.app).get('/.well-known/jwks.json').expect(200));
    expect(jwks.keys.map((k: JWK) => k.kid)).not.toContain(body.kid);
    expect(JSON.stringify(jwks)).not.toMatch(/"(d|p|q|k|dp|dq|qi)":/);
    expect(json(await request(f.app).get('/keys/hmac/jwks.json').expect(200))).toEqual({ keys: [] });
    const token = (await issue('hmac', { aud: 'x' })).text;
    expect(json(await verify('hmac', { token, aud: 'x', sub: 'hmac' }).expect(200)).valid).toBe(true);
    expect(json(await request(f.app).get('/utils/publicKey/hmac').expect(404)).error.code).toBe('no_public_key');
  });

  it('refuses another alg for an existing key with 409 alg_mismatch and an unknown alg with 400', async () => {
    expect(json(await request(f.app).get('/keys/alpha?alg=ES256').expect(409)).error.code).toBe('alg_mismatch');
    expect(json(await request(f.app).get('/keys/beta?alg=none').expect(400)).error.code).toBe('invalid_alg');
  });

  it('creates one key when the same keyId is created concurrently', async () => {
    const answers = await Promise.all(Array.from({ length: 5 }, () => request(f.app).post('/keys/race')));
    expect(new Set(answers.map((a) => a.body.kid)).size).toBe(1);
    expect(answers.filter((a) => a.body.created)).toHaveLength(1);
  });
});

describe('POST /keys/:keyId/rotate', () => {
  it('by default publishes the new key 1260 s before it signs (istiod refetches every 20 min, plus 60 s skew)', async () => {
    const before = json(await request(f.app).post('/keys/rot-default').expect(200));
    const rotated = json(await request(f.app).post('/keys/rot-default/rotate').expect(200));
    expect(rotated.activateAt).toBe(new Date(f.time.clock().getTime() + 1_260_000).toISOString());
    expect(decodeProtectedHeader((await issue('rot-default')).text).kid).toBe(before.kid);
    expect(json(await request(f.app).get('/keys/rot-default/jwks.json')).keys.map((k: JWK) => k.kid)).toEqual([rotated.kid, before.kid]);
  });

  it('with ?publishAhead=0 (a compromised key) publishes the new key and signs with it from now, keeping the old kid in the JWKS', async () => {
    const before = json(await request(f.app).post('/keys/rot-now').expect(200));
    const rotated = json(await request(f.app).post('/keys/rot-now/rotate?publishAhead=0').expect(200));
    expect(rotated.kid).not.toBe(before.kid);
    expect(rotated.activateAt).toBe(f.time.clock().toISOString());
    expect(rotated.previous).toEqual([{ kid: before.kid, retireAt: new Date(f.time.clock().getTime() + (86_400 + 60) * 1000).toISOString() }]);
    expect(decodeProtectedHeader((await issue('rot-now')).text).kid).toBe(rotated.kid);
    const kids = json(await request(f.app).get('/keys/rot-now/jwks.json')).keys.map((k: JWK) => k.kid);
    expect(kids).toEqual([rotated.kid, before.kid]);
  });

  it('with ?publishAhead=N publishes the new key but keeps signing with the old one until then', async () => {
    const before = json(await request(f.app).post('/keys/rot-ahead').expect(200));
    const rotated = json(await request(f.app).post('/keys/rot-ahead/rotate?publishAhead=1200').expect(200));
    expect(rotated.activateAt).toBe(new Date(f.time.clock().getTime() + 1_200_000).toISOString());
    expect(json(await request(f.app).get('/keys/rot-ahead')).kid).toBe(before.kid);
    expect(decodeProtectedHeader((await issue('rot-ahead')).text).kid).toBe(before.kid);
    expect(json(await request(f.app).get('/keys/rot-ahead/jwks.json')).keys.map((k: JWK) => k.kid)).toEqual([rotated.kid, before.kid]);
  });

  it('answers 400 for a bad publishAhead and 404 for an unknown keyId', async () => {
    expect(json(await request(f.app).post('/keys/rot-ahead/rotate?publishAhead=soon').expect(400)).error.code).toBe('invalid_publish_ahead');
    expect(json(await request(f.app).post('/keys/rot-ahead/rotate?publishAhead=90000').expect(400)).error.code).toBe('invalid_publish_ahead');
    expect(json(await request(f.app).post('/keys/ghost/rotate').expect(404)).error.code).toBe('key_not_found');
  });
});

describe('POST /issueToken/:keyId', () => {
  it('answers the token as text with iss, sub = keyId, integer iat, exp = iat + TOKEN_TTL, jti and kid', async () => {
    const res = await issue('svc').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    const claims = decodeJwt(res.text);
    expect(claims).toMatchObject({ iss: 'https://jwt-factory/', sub: 'svc' });
    expect(Number.isInteger(claims.iat)).toBe(true);
    expect(claims.exp! - claims.iat!).toBe(3600);
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(decodeProtectedHeader(res.text)).toMatchObject({ alg: 'RS256', typ: 'JWT', kid: (await f.keystore.get('svc'))!.current.kid });
  });

  it('lets body claims add to and override iss, sub and aud (string or array)', async () => {
    const token = (await issue('svc', { iss: 'https://other/', sub: 'alice', aud: ['a', 'b'], role: 'admin' })).text;
    expect(decodeJwt(token)).toMatchObject({ iss: 'https://other/', sub: 'alice', aud: ['a', 'b'], role: 'admin' });
  });

  it('answers JSON with token, kid, alg, exp and jti when Accept prefers JSON or ?format=json', async () => {
    for (const res of [await issue('svc').set('Accept', 'application/json'), await issue('svc', {}, '?format=json')]) {
      const body = json(res);
      expect(Object.keys(body)).toEqual(expect.arrayContaining(['token', 'kid', 'alg', 'exp', 'jti', 'iat', 'bytes']));
      expect(decodeJwt(body.token).jti).toBe(body.jti);
    }
  });

  it('answers text to a client that accepts both JSON and text (axios default), as the original sample did', async () => {
    const res = await issue('svc').set('Accept', 'application/json, text/plain, */*').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
  });

  it('issues an already expired token with ?expired=1 and a shorter one with ?ttl=', async () => {
    const expired = decodeJwt((await issue('svc', {}, '?expired=1')).text);
    const now = Math.floor(f.time.clock().getTime() / 1000);
    expect(expired.exp).toBeLessThan(now - 60);
    const short = decodeJwt((await issue('svc', {}, '?ttl=120')).text);
    expect(short.exp! - short.iat!).toBe(120);
  });

  it('refuses a ttl over MAX_TOKEN_TTL, exp in the body, and a body that is not an object', async () => {
    expect(json(await issue('svc', {}, '?ttl=86401').expect(400)).error.code).toBe('invalid_ttl');
    expect(json(await issue('svc', {}, '?ttl=abc').expect(400)).error.code).toBe('invalid_ttl');
    expect(json(await issue('svc', { exp: 1 }).expect(400)).error.code).toBe('invalid_claims');
    expect(json(await issue('svc', { aud: 5 }).expect(400)).error.code).toBe('invalid_claims');
    expect(json(await issue('svc', [1, 2]).expect(400)).error.code).toBe('invalid_claims');
  });

  it('creates the key of an unknown keyId, as the original sample did', async () => {
    const token = (await issue('fresh-on-issue').expect(200)).text;
    expect(f.keystore.list()).toContain('fresh-on-issue');
    expect(json(await verify('fresh-on-issue', { token, aud: 'x', sub: 'fresh-on-issue' }).expect(403)).error.code).toBe('audience_invalid');
  });
});

describe('POST /verify/:keyId', () => {
  it('answers 200 { valid: true, claims } for a good token', async () => {
    const token = (await issue('svc', { aud: ['a', 'b'] })).text;
    const body = json(await verify('svc', { token, aud: 'b', sub: 'svc' }).expect(200));
    expect(body.valid).toBe(true);
    expect(body.claims).toMatchObject({ sub: 'svc', aud: ['a', 'b'] });
  });

  it('answers 403 TokenExpiredError with expiredAt for an expired token, as the original sample did', async () => {
    const token = (await issue('svc', {}, '?expired=1')).text;
    const body = json(await verify('svc', { token, aud: 'anything', sub: 'svc' }).expect(403));
    expect(body).toMatchObject({ valid: false, claims: {}, error: { name: 'TokenExpiredError', message: 'jwt expired', code: 'expired' } });
    expect(new Date(body.error.expiredAt).getTime()).toBe(decodeJwt(token).exp! * 1000);
  });

  it('answers 403 for a wrong sub, issuer or audience', async () => {
    const token = (await issue('svc', { aud: 'a' })).text;
    expect(json(await verify('svc', { token, aud: 'a', sub: 'bob' }).expect(403)).error.code).toBe('subject_invalid');
    expect(json(await verify('svc', { token, aud: 'z', sub: 'svc' }).expect(403)).error.code).toBe('audience_invalid');
    expect(json(await verify('svc', { token, aud: 'a', sub: 'svc', iss: 'https://else/' }).expect(403)).error.code).toBe('issuer_invalid');
  });

  it('accepts a token within the 60 s clock tolerance and refuses it after', async () => {
    const token = (await issue('svc', { aud: 'a' }, '?ttl=10')).text;
    const exp = decodeJwt(token).exp! * 1000;
    const saved = f.time.clock();
    try {
      f.time.set(new Date(exp + 59_000));
      expect(json(await verify('svc', { token, aud: 'a', sub: 'svc' }).expect(200)).valid).toBe(true);
      f.time.set(new Date(exp + 60_000));
      expect(json(await verify('svc', { token, aud: 'a', sub: 'svc' }).expect(403)).error.name).toBe('TokenExpiredError');
    } finally {
      f.time.set(saved);
    }
  });

  it.each([['token'], ['aud'], ['sub']])('answers 400 missing_field when %s is missing', async (field) => {
    const body: Record<string, unknown> = { token: 'a.b.c', aud: 'a', sub: 'svc' };
    delete body[field];
    const answer = json(await verify('svc', body).expect(400));
    expect(answer.error).toMatchObject({ code: 'missing_field', field });
  });

  it('answers 404 key_not_found for an unknown keyId and creates nothing', async () => {
    expect(json(await verify('nobody', { token: 'a.b.c', aud: 'a', sub: 'x' }).expect(404)).error.code).toBe('key_not_found');
    expect(f.keystore.list()).not.toContain('nobody');
  });

  it("refuses a token signed by another keyId's key", async () => {
    await request(f.app).post('/keys/other').expect(200);
    const token = (await issue('other', { aud: 'a', sub: 'svc' })).text;
    expect(json(await verify('svc', { token, aud: 'a', sub: 'svc' }).expect(403)).error.code).toBe('unknown_kid');
  });
});

describe('attack tokens on /verify', () => {
  const body = async () => ({ aud: 'a', sub: 'svc', token: (await issue('svc', { aud: 'a' })).text });
  const segments = (token: string) => token.split('.') as [string, string, string];
  const enc = (obj: object) => base64url.encode(JSON.stringify(obj));

  it('refuses alg none', async () => {
    const { token, ...rest } = await body();
    const [, payload] = segments(token);
    const none = `${enc({ alg: 'none', typ: 'JWT' })}.${payload}.`;
    const answer = json(await verify('svc', { ...rest, token: none }).expect(403));
    expect(answer.error.name).toBe('JsonWebTokenError');
    expect(answer.error.code).toBe('malformed');
  });

  it('refuses alg none even with a non-empty signature segment', async () => {
    const { token, ...rest } = await body();
    const [, payload, sig] = segments(token);
    expect(json(await verify('svc', { ...rest, token: `${enc({ alg: 'none' })}.${payload}.${sig}` }).expect(403)).error.code).toBe('alg_none');
  });

  it('refuses an HS256 token forged with the RSA public key as the HMAC secret', async () => {
    const { token, ...rest } = await body();
    const entry = (await f.keystore.get('svc'))!;
    const [, payload] = segments(token);
    const header = enc({ alg: 'HS256', typ: 'JWT', kid: entry.current.kid });
    const sig = createHmac('sha256', entry.current.publicPem!).update(`${header}.${payload}`).digest('base64url');
    expect(json(await verify('svc', { ...rest, token: `${header}.${payload}.${sig}` }).expect(403)).error.code).toBe('invalid_algorithm');
  });

  it.each(['jwk', 'jku', 'x5u'])('ignores a %s header pointing at an attacker key', async (member) => {
    const attacker = await generateKeyPair('RS256', { extractable: true });
    const pub = await exportJWK(attacker.publicKey);
    const value = member === 'jwk' ? pub : 'https://attacker.invalid/jwks.json';
    const forged = await new SignJWT({ iss: 'https://jwt-factory/', sub: 'svc', aud: 'a', exp: Math.floor(Date.now() / 1000) + 600 })
      .setProtectedHeader({ alg: 'RS256', [member]: value })
      .sign(attacker.privateKey);
    expect(json(await verify('svc', { token: forged, aud: 'a', sub: 'svc' }).expect(403)).error.code).toBe('invalid_signature');
  });

  it('refuses an unknown crit header and b64:false', async () => {
    const entry = (await f.keystore.get('svc'))!;
    const payload = { iss: 'https://jwt-factory/', sub: 'svc', aud: 'a', exp: Math.floor(Date.now() / 1000) + 600 };
    const crit = await new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: entry.current.kid, crit: ['x-ours'], 'x-ours': 1 }).sign(entry.current.signingKey, { crit: { 'x-ours': true } });
    expect(json(await verify('svc', { token: crit, aud: 'a', sub: 'svc' }).expect(403)).error.code).toBe('crit_unsupported');
    const [, p] = segments(crit);
    const b64 = `${enc({ alg: 'RS256', kid: entry.current.kid, b64: false, crit: ['b64'] })}.${p}.AAAA`;
    expect(json(await verify('svc', { token: b64, aud: 'a', sub: 'svc' }).expect(403)).error.code).toBe('b64_unsupported');
  });

  it('refuses a token over 8 KiB before parsing it', async () => {
    const big = `${'a'.repeat(4000)}.${'b'.repeat(4200)}.c`;
    expect(json(await verify('svc', { token: big, aud: 'a', sub: 'svc' }).expect(403)).error.code).toBe('too_large');
  });

  it.each([
    ['two segments', (t: string) => t.split('.').slice(0, 2).join('.')],
    ['four segments', (t: string) => `${t}.x`],
    ['padding', (t: string) => `${t}==`],
    ['a space', (t: string) => t.replace('.', ' .')],
    ['standard base64 characters', (t: string) => `${t.slice(0, -2)}+/`],
    ['a header that is not JSON', (t: string) => `${base64url.encode('not json')}.${t.split('.')[1]}.${t.split('.')[2]}`],
    ['an impossible segment length', (t: string) => `${t}A`.replace(/\.([^.]*)$/, (m) => (m.length % 4 === 2 ? `${m}A` : m))],
  ])('refuses malformed segments: %s', async (_name, mangle) => {
    const { token, ...rest } = await body();
    const answer = json(await verify('svc', { ...rest, token: mangle(token) }).expect(403));
    expect(answer).toMatchObject({ valid: false, error: { name: 'JsonWebTokenError' }, claims: {} });
    expect(['malformed', 'invalid_signature']).toContain(answer.error.code);
  });
});

describe('negative tokens on demand (?variant=)', () => {
  it.each(VARIANTS)('issues %s, which /verify refuses with the documented code', async (variant) => {
    const res = await issue('svc', { aud: 'a' }, `?variant=${variant}&format=json`).expect(200);
    const body = json(res);
    expect(res.headers['x-token-variant']).toBe(variant);
    expect(body.verdict).toEqual(VERDICTS[variant]);
    const answer = json(await verify('svc', { token: body.token, aud: 'a', sub: 'svc' }).expect(403));
    expect(answer.error.code).toBe(VERDICTS[variant].verify);
  });

  it('makes wrong-audience carry the .invalid audience and oversize exceed TOKEN_SIZE_LIMIT with a Warning', async () => {
    expect(decodeJwt((await issue('svc', { aud: 'a' }, '?variant=wrong-audience')).text).aud).toBe(WRONG_AUDIENCE);
    const res = await issue('svc', {}, '?variant=oversize&format=json').expect(200);
    expect(json(res).bytes).toBeGreaterThan(8192);
    expect(json(res).warnings[0]).toMatch(/over TOKEN_SIZE_LIMIT/);
    expect(res.headers.warning).toMatch(/^299 - "token is \d+ bytes/);
  });

  it('answers exp null in JSON for no-exp, whose token has no exp claim', async () => {
    const body = json(await issue('svc', {}, '?variant=no-exp&format=json').expect(200));
    expect(body.exp).toBeNull();
    expect(decodeJwt(body.token)).not.toHaveProperty('exp');
  });

  it('answers 400 invalid_variant for an unknown variant', async () => {
    expect(json(await issue('svc', {}, '?variant=nope').expect(400)).error.code).toBe('invalid_variant');
  });

  it.each(['ES256', 'EdDSA', 'HS256'])('makes a wrong-alg token for a %s key that /verify refuses', async (alg) => {
    const keyId = `wa-${alg.toLowerCase()}`;
    await request(f.app).post(`/keys/${keyId}?alg=${alg}`).expect(200);
    const token = (await issue(keyId, {}, '?variant=wrong-alg')).text;
    expect(decodeProtectedHeader(token).alg).not.toBe(alg);
    expect(json(await verify(keyId, { token, aud: 'x', sub: keyId }).expect(403)).error.code).toBe('invalid_algorithm');
  });
});

describe('size guard', () => {
  it('adds a Warning header and JSON warnings over TOKEN_SIZE_WARN', async () => {
    const res = await issue('svc', { blob: 'x'.repeat(3500) }, '?format=json').expect(200);
    expect(json(res).bytes).toBeGreaterThan(4096);
    expect(res.headers.warning).toMatch(/over TOKEN_SIZE_WARN \(4096\)/);
    const small = await issue('svc', {}).expect(200);
    expect(small.headers.warning).toBeUndefined();
  });

  it('answers 422 token_too_large over TOKEN_SIZE_LIMIT when TOKEN_SIZE_POLICY=refuse, but still issues ?variant=oversize', async () => {
    const strict = await makeFactory({ TOKEN_SIZE_POLICY: 'refuse' });
    try {
      const res = await request(strict.app).post('/issueToken/big').send({ blob: 'x'.repeat(7000) }).expect(422);
      expect(json(res).error.code).toBe('token_too_large');
      await request(strict.app).post('/issueToken/big?variant=oversize').expect(200);
    } finally {
      await strict.cleanup();
    }
  });
});

describe('discovery', () => {
  it('publishes every signing key in /.well-known/jwks.json with kid, alg, use and only public members', async () => {
    const res = await request(f.app).get('/.well-known/jwks.json').expect(200);
    const { keys } = json(res) as { keys: JWK[] };
    expect(keys.length).toBeGreaterThan(3);
    for (const key of keys) {
      expect(key.use).toBe('sig');
      expect(typeof key.kid).toBe('string');
      expect(typeof key.alg).toBe('string');
      for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) expect(key).not.toHaveProperty(secret);
    }
    expect(res.headers['cache-control']).toBe('public, max-age=60');
  });

  it('answers 304 to If-None-Match with the current ETag and a new ETag after a key change', async () => {
    const first = await request(f.app).get('/.well-known/jwks.json').expect(200);
    const etag = first.headers.etag as string;
    expect(etag).toMatch(/^"[\w-]+"$/);
    await request(f.app).get('/.well-known/jwks.json').set('If-None-Match', etag).expect(304);
    await request(f.app).post('/keys/etag-change').expect(200);
    const after = await request(f.app).get('/.well-known/jwks.json').set('If-None-Match', etag).expect(200);
    expect(after.headers.etag).not.toBe(etag);
  });

  it('publishes one keyId at /keys/:keyId/jwks.json and 404s an unknown one', async () => {
    const entry = (await f.keystore.get('svc'))!;
    const body = json(await request(f.app).get('/keys/svc/jwks.json').expect(200));
    expect(body.keys.map((k: JWK) => k.kid)).toEqual([entry.current.kid]);
    expect(json(await request(f.app).get('/keys/ghost/jwks.json').expect(404)).error.code).toBe('key_not_found');
  });

  it('serves an OpenID configuration whose issuer equals the tokens iss and whose jwks_uri uses PUBLIC_URL', async () => {
    const body = json(await request(f.app).get('/.well-known/openid-configuration').expect(200));
    const token = (await issue('svc')).text;
    expect(body.issuer).toBe(decodeJwt(token).iss);
    expect(body.jwks_uri).toBe('http://factory.test:5555/.well-known/jwks.json');
    expect(body.id_token_signing_alg_values_supported).toContain('RS256');
    expect(body.id_token_signing_alg_values_supported).not.toContain('HS256');
  });

  it('issues tokens that jsonwebtoken (an independent library) verifies with the key from the published JWKS', async () => {
    const token = (await issue('svc', { aud: 'svc-b' })).text;
    const { keys } = json(await request(f.app).get('/.well-known/jwks.json')) as { keys: JWK[] };
    const jwk = keys.find((k) => k.kid === decodeProtectedHeader(token).kid)!;
    const pem = createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ format: 'pem', type: 'spki' });
    const claims = jsonwebtoken.verify(token, pem, { algorithms: ['RS256'], audience: 'svc-b', issuer: 'https://jwt-factory/', subject: 'svc' });
    expect(claims).toMatchObject({ sub: 'svc', aud: 'svc-b' });
  });
});

describe('utils and operations', () => {
  it('lists keyIds at /utils/keys and answers /utils/publicKey like /keys', async () => {
    const list = json(await request(f.app).get('/utils/keys').expect(200));
    expect(list).toEqual(expect.arrayContaining(['svc', 'alpha']));
    const pub = json(await request(f.app).get('/utils/publicKey/svc').expect(200));
    expect(pub.publicKey).toBe(json(await request(f.app).get('/keys/svc')).publicKey);
    expect(json(await request(f.app).get('/utils/publicKey/ghost').expect(404)).error.code).toBe('key_not_found');
  });

  it.each(['/dump', '/utils/dump'])('POST %s persists every key', async (route) => {
    const body = json(await request(f.app).post(route).expect(200));
    expect(body.dumped).toEqual(f.keystore.list());
    const files = await readdir(f.dir);
    for (const keyId of body.dumped) expect(files).toContain(`${keyId}.json`);
  });

  it('answers /healthz and /readyz', async () => {
    expect(json(await request(f.app).get('/healthz').expect(200)).status).toBe('ok');
    expect(json(await request(f.app).get('/readyz').expect(200)).status).toBe('ready');
  });

  it('answers /readyz 503 until the key store is loaded', async () => {
    const keystore = createKeyStore({ dir: f.dir, clock: f.time.clock, logger: silentLogger(), retireAfterSeconds: 60 });
    const app = createApp({ config: f.config, keystore, logger: silentLogger(), clock: f.time.clock });
    expect(json(await request(app).get('/readyz').expect(503)).status).toBe('loading');
    await keystore.load();
    expect(json(await request(app).get('/readyz').expect(200)).keys).toBe(f.keystore.list().length);
  });
});

describe('bad input', () => {
  it('answers 400 malformed_json for malformed JSON', async () => {
    const res = await request(f.app).post('/issueToken/svc').set('Content-Type', 'application/json').send('{"aud":').expect(400);
    expect(json(res).error.code).toBe('malformed_json');
  });

  it('answers 413 body_too_large over BODY_LIMIT', async () => {
    const res = await request(f.app).post('/issueToken/svc').send({ blob: 'x'.repeat(110_000) }).expect(413);
    expect(json(res).error.code).toBe('body_too_large');
  });

  it.each(['..%2F..%2Fetc', '%2e%2e', 'a%2Fb', 'x'.repeat(65), 'bad%20id', '.'])('answers 400 for keyId %s and touches nothing on disk', async (keyId) => {
    const before = await readdir(f.dir);
    for (const res of [await request(f.app).get(`/keys/${keyId}`), await request(f.app).post(`/issueToken/${keyId}`), await request(f.app).post(`/keys/${keyId}/rotate`)]) {
      expect(res.status).toBe(400);
      expect(['invalid_key_id', 'invalid_path']).toContain(json(res).error.code);
    }
    expect(await readdir(f.dir)).toEqual(before);
  });

  it('answers 400 invalid_path for raw dot segments', async () => {
    const res = await request(f.app).get('/keys/../../etc').expect(400);
    expect(json(res).error.code).toBe('invalid_path');
  });

  it('answers 404 JSON for an unknown route and never a stack trace', async () => {
    const res = await request(f.app).get('/nope').expect(404);
    expect(json(res).error.code).toBe('route_not_found');
    const bad = await request(f.app).post('/issueToken/svc').set('Content-Type', 'application/json').send('{');
    expect(bad.text).not.toMatch(/at .*\.(ts|js):\d+/);
  });
});

describe('MAX_KEYS', () => {
  it('an unknown keyId past the limit answers 403 key_limit_reached, writes nothing, and known keys keep working', async () => {
    const small = await makeFactory({ MAX_KEYS: '2' });
    try {
      await request(small.app).post('/keys/a').expect(200);
      await request(small.app).post('/issueToken/b').send({}).expect(200);
      const refused = await request(small.app).post('/issueToken/c').send({ aud: 'x' }).expect(403);
      expect(refused.headers['content-type']).toMatch(/^application\/json/);
      expect(refused.body.error).toMatchObject({ code: 'key_limit_reached', maxKeys: 2 });
      await request(small.app).get('/keys/c').expect(403);
      expect((await readdir(small.dir)).sort()).toEqual(['a.json', 'b.json']);
      await request(small.app).post('/issueToken/a').send({ aud: 'x' }).expect(200);
      await request(small.app).get('/keys/b').expect(200);
    } finally {
      await small.cleanup();
    }
  });
});
