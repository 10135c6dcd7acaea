import { describe, expect, it } from 'vitest';
import { createMemorySessionStore, type LoginRecord } from '../../../mesh/login/store.js';

const login = (expiresAt: number, state = 's'): LoginRecord => ({ kind: 'login', state, nonce: 'n', codeVerifier: 'v', returnTo: '/', expiresAt });

describe('the memory session store', () => {
  it('forgets a record at its expiresAt, to the millisecond', async () => {
    let t = 1_000;
    const store = createMemorySessionStore({ now: () => t, maxEntries: 10 });
    await store.set('k', login(2_000));
    t = 1_999;
    expect(await store.get('k')).toMatchObject({ kind: 'login' });
    t = 2_000;
    expect(await store.get('k')).toBeUndefined();
    expect(store.size()).toBe(0);
  });

  it('sweeps expired records it is never asked for again', async () => {
    let t = 0;
    const store = createMemorySessionStore({ now: () => t, maxEntries: 100, sweepEveryMs: 1000 });
    for (let i = 0; i < 10; i += 1) await store.set(`old${i}`, login(500));
    await store.set('young', login(10_000));
    t = 1_000;
    await store.get('anything');
    expect(store.size()).toBe(1);
    expect(await store.get('young')).toBeDefined();
  });

  it('keeps at most maxEntries: the oldest write goes first', async () => {
    const store = createMemorySessionStore({ now: () => 0, maxEntries: 3 });
    for (const k of ['a', 'b', 'c']) await store.set(k, login(10));
    await store.set('a', login(10, 'rewritten'));
    await store.set('d', login(10));
    expect(store.size()).toBe(3);
    expect(await store.get('b')).toBeUndefined();
    expect(await store.get('a')).toMatchObject({ state: 'rewritten' });
  });

  it('a flood of logins under way never pushes a session out', async () => {
    const store = createMemorySessionStore({ now: () => 0, maxEntries: 2 });
    await store.set('s', { kind: 'session', sub: 'alice', createdAt: 0, lastSeenAt: 0, expiresAt: 10, tokens: { accessToken: 'a', idToken: 'i', accessExpiresAt: 10 }, idClaims: {} });
    for (let i = 0; i < 5; i += 1) await store.set(`l${i}`, login(10));
    expect(await store.get('s')).toMatchObject({ kind: 'session' });
    expect(store.size()).toBe(3);
  });

  it('hands out copies: a caller editing a record does not edit the store', async () => {
    const store = createMemorySessionStore({ now: () => 0, maxEntries: 3 });
    await store.set('k', login(10));
    const got = (await store.get('k')) as LoginRecord;
    got.state = 'changed';
    expect(await store.get('k')).toMatchObject({ state: 's' });
    await store.delete('k');
    expect(await store.get('k')).toBeUndefined();
  });
});
