import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { createVerifyCache, MAX_CACHED_TOKEN_BYTES, stillWithinTime } from '../../app/verifycache.js';
import { verifyJwt, type VerificationKey } from '../../lib/jwt.js';

const T0 = 1_800_000_000;
const at = (s: number) => new Date(s * 1000);
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keys: VerificationKey[] = [{ kid: 'k1', alg: 'ES256', key: publicKey }];
const sign = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(privateKey);

describe('receiver verification cache', () => {
  it('answers a cached token exactly where a fresh verification answers valid, at every second around exp and nbf', async () => {
    const token = await sign({ iss: 'https://servicea/', exp: T0 + 300, nbf: T0 - 10 });
    const { payload } = await verifyJwt(token, keys, { now: at(T0), clockTolerance: 60 });
    const answers: Array<[number, boolean, boolean]> = [];
    for (const s of [T0 - 71, T0 - 70, T0 - 69, T0 + 359, T0 + 360, T0 + 361]) {
      const cache = createVerifyCache();
      cache.insert(token, payload as Record<string, unknown>);
      const fresh = await verifyJwt(token, keys, { now: at(s), clockTolerance: 60 }).then(() => true, () => false);
      answers.push([s - T0, fresh, cache.lookup(token, at(s), 60) !== undefined]);
    }
    expect(answers).toEqual([
      [-71, false, false],
      [-70, true, true],
      [-69, true, true],
      [359, true, true],
      [360, false, false],
      [361, false, false],
    ]);
    expect(stillWithinTime({ exp: T0 + 300 }, at(T0 + 359), 60)).toBe(true);
    expect(stillWithinTime({ exp: T0 + 300 }, at(T0 + 360), 60)).toBe(false);
    expect(stillWithinTime({ exp: T0 + 300 }, at(T0 + 300), 0)).toBe(false);
  });

  it('forgets a token once it is past exp plus the tolerance, so it is verified (and refused) again', async () => {
    const token = await sign({ exp: T0 + 10 });
    const cache = createVerifyCache();
    cache.insert(token, { exp: T0 + 10 });
    expect(cache.lookup(token, at(T0 + 69), 60)).toEqual({ exp: T0 + 10 });
    expect(cache.lookup(token, at(T0 + 70), 60)).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('holds at most its size, evicting the least recently used token first', async () => {
    const cache = createVerifyCache(2);
    const [a, b, c] = await Promise.all([1, 2, 3].map((n) => sign({ exp: T0 + 300, n })));
    cache.insert(a!, { exp: T0 + 300, n: 1 });
    cache.insert(b!, { exp: T0 + 300, n: 2 });
    expect(cache.lookup(a!, at(T0), 60)).toBeDefined();
    cache.insert(c!, { exp: T0 + 300, n: 3 });
    expect(cache.size).toBe(2);
    expect(cache.lookup(b!, at(T0), 60)).toBeUndefined();
    expect(cache.lookup(a!, at(T0), 60)).toMatchObject({ n: 1 });
    expect(cache.lookup(c!, at(T0), 60)).toMatchObject({ n: 3 });
  });

  it('keeps nothing when its size is 0 or the token is larger than Envoy caches (4 KiB)', async () => {
    const off = createVerifyCache(0);
    const token = await sign({ exp: T0 + 300 });
    off.insert(token, { exp: T0 + 300 });
    expect(off.lookup(token, at(T0), 60)).toBeUndefined();
    const cache = createVerifyCache();
    const large = await sign({ exp: T0 + 300, pad: 'x'.repeat(MAX_CACHED_TOKEN_BYTES) });
    cache.insert(large, { exp: T0 + 300 });
    expect(cache.size).toBe(0);
  });

  it('never matches a different token, even one with the same claims', async () => {
    const cache = createVerifyCache();
    const token = await sign({ exp: T0 + 300 });
    cache.insert(token, { exp: T0 + 300 });
    const other = await sign({ exp: T0 + 300 });
    // ES256 signatures are randomized: same claims, another token.
    expect(other).not.toBe(token);
    expect(cache.lookup(other, at(T0), 60)).toBeUndefined();
    expect(cache.lookup(`${token.slice(0, -2)}AA`, at(T0), 60)).toBeUndefined();
  });
});
