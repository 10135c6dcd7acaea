import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { createTokenCache, refreshInstant, type MintedToken } from '../../app/tokencache.js';

const secret = new TextEncoder().encode('tokencache-test-secret-of-32-bytes!!');
const T0 = 1_800_000_000;
const at = (s: number) => new Date(s * 1000);

/** A compact JWT with the given iat / exp (signed only so it has the real shape). */
const jwt = (claims: { iat?: number; exp?: number; jti?: string }) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(secret);

/** A mint that counts its calls and answers tokens living `ttl` seconds from the clock's now. */
function minter(clock: { s: number }, ttl: number) {
  const calls = { n: 0 };
  const mint = async (): Promise<MintedToken> => {
    calls.n += 1;
    const jti = `t${calls.n}`;
    return { token: await jwt({ iat: clock.s, exp: clock.s + ttl, jti }), jti };
  };
  return { mint, calls };
}

describe('servicea token cache', () => {
  it('reuses a token until exp minus 60 s, and mints a new one from that second on', async () => {
    const clock = { s: T0 };
    const cache = createTokenCache({ now: () => at(clock.s) });
    const { mint, calls } = minter(clock, 3600);
    const first = await cache.get('factory:servicea:serviceb', mint);
    clock.s = T0 + 3600 - 61;
    expect(await cache.get('factory:servicea:serviceb', mint)).toEqual(first);
    expect(calls.n).toBe(1);
    clock.s = T0 + 3600 - 60;
    const second = await cache.get('factory:servicea:serviceb', mint);
    expect(second.jti).toBe('t2');
    expect(calls.n).toBe(2);
  });

  it('keeps one token per key: another audience mints its own', async () => {
    const clock = { s: T0 };
    const cache = createTokenCache({ now: () => at(clock.s) });
    const { mint, calls } = minter(clock, 3600);
    const b = await cache.get('factory:servicea:serviceb', mint);
    const c = await cache.get('factory:servicea:servicec', mint);
    expect(b.jti).not.toBe(c.jti);
    expect(calls.n).toBe(2);
  });

  it('lets one mint run per key: callers that miss together share its answer', async () => {
    const clock = { s: T0 };
    const cache = createTokenCache({ now: () => at(clock.s) });
    const { mint, calls } = minter(clock, 3600);
    const answers = await Promise.all(Array.from({ length: 20 }, () => cache.get('k', mint)));
    expect(calls.n).toBe(1);
    expect(new Set(answers.map((a) => a.token)).size).toBe(1);
  });

  it('passes a failed mint to every waiting caller, keeps nothing, and mints again on the next call', async () => {
    const clock = { s: T0 };
    const cache = createTokenCache({ now: () => at(clock.s) });
    let fail = true;
    const { mint, calls } = minter(clock, 3600);
    const flaky = () => (fail ? Promise.reject(new Error('factory down')) : mint());
    await expect(Promise.all([cache.get('k', flaky), cache.get('k', flaky)])).rejects.toThrow('factory down');
    fail = false;
    expect((await cache.get('k', flaky)).jti).toBe('t1');
    expect(calls.n).toBe(1);
  });

  it('refreshes a short-lived token at half its lifetime, and never keeps one without exp', async () => {
    expect(refreshInstant(await jwt({ iat: T0, exp: T0 + 300 }), 60)).toBe(T0 + 240);
    expect(refreshInstant(await jwt({ iat: T0, exp: T0 + 100 }), 60)).toBe(T0 + 50);
    expect(refreshInstant(await jwt({ iat: T0 }), 60)).toBeUndefined();
    expect(refreshInstant('not a jwt', 60)).toBeUndefined();
    const clock = { s: T0 };
    const cache = createTokenCache({ now: () => at(clock.s) });
    let n = 0;
    const noExp = async () => ({ token: await jwt({ iat: T0, jti: `x${(n += 1)}` }) });
    await cache.get('k', noExp);
    await cache.get('k', noExp);
    expect(n).toBe(2);
  });

  it('never keeps a token that is already inside its refresh window when it arrives', async () => {
    const clock = { s: T0 };
    const cache = createTokenCache({ now: () => at(clock.s) });
    const { mint, calls } = minter({ s: T0 - 3600 + 30 }, 3600);
    await cache.get('k', mint);
    await cache.get('k', mint);
    expect(calls.n).toBe(2);
  });
});
