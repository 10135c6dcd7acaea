import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { CodeRecord, OidcStore, RefreshRecord, SessionRecord } from '../../../jwt-factory/oidc/store.js';
import { manualClock } from '../harness.js';

/**
 * The behaviour every OidcStore keeps, run against each implementation (the file store and
 * the PostgreSQL one): what the provider's grants rely on, at exact expiry boundaries of an
 * injected clock. `open` gives a store over fresh or (with the same `place`) existing state.
 */
export interface StoreUnderTest {
  /** A store at `clock` over `place` (a folder, a database): the same place is the same state. */
  open(clock: () => Date, place: string): Promise<OidcStore>;
  /** A place no other test uses. */
  place(): Promise<string>;
}

const T0 = new Date('2026-06-01T12:00:00Z');
const id = () => randomBytes(32).toString('base64url');

export const codeRecord = (expiresAt: number, extra: Partial<CodeRecord> = {}): CodeRecord => ({
  id: id(),
  clientId: 'webui',
  redirectUri: 'http://localhost:3000/callback',
  scope: 'openid profile',
  audience: 'serviceb',
  codeChallenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
  nonce: 'n-1',
  sub: 'alice',
  authTime: Math.floor(T0.getTime() / 1000),
  sid: 'sid-1',
  expiresAt,
  ...extra,
});

export const refreshRecord = (expiresAt: number, familyId = id()): RefreshRecord => ({
  id: id(),
  familyId,
  clientId: 'webui',
  sub: 'alice',
  scope: 'openid offline_access',
  audience: 'serviceb',
  authTime: Math.floor(T0.getTime() / 1000),
  sid: undefined,
  expiresAt,
});

const sessionRecord = (expiresAt: number): SessionRecord => ({ id: id(), sid: 'sid-2', sub: 'bob', authTime: Math.floor(T0.getTime() / 1000), expiresAt });

/** Registers the contract's tests for one implementation. */
export function oidcStoreContract(name: string, subject: StoreUnderTest): void {
  const fresh = async () => {
    const time = manualClock(T0);
    const place = await subject.place();
    return { time, place, store: await subject.open(time.clock, place) };
  };
  const t0 = T0.getTime();

  describe(`${name}: the OidcStore contract`, () => {
    it('useCode answers the code unused once, then as used at the first redemption\'s time, with what it issued', async () => {
      const { store, time } = await fresh();
      const code = codeRecord(t0 + 60_000);
      await store.saveCode(code);
      expect(await store.useCode(code.id)).toEqual(code);
      await store.noteIssued(code.id, { familyId: 'fam-1', jtis: ['jti-1'] });
      time.advance(1000);
      const replay = await store.useCode(code.id);
      expect(replay).toEqual({ ...code, usedAt: t0, issued: { familyId: 'fam-1', jtis: ['jti-1'] } });
      expect((await store.useCode(code.id))?.usedAt).toBe(t0);
    });

    it('useCode answers undefined for an unknown code, and for a code from its expiresAt on (to the millisecond)', async () => {
      const { store, time } = await fresh();
      expect(await store.useCode(id())).toBeUndefined();
      const early = codeRecord(t0 + 60_000);
      const late = codeRecord(t0 + 60_000);
      await store.saveCode(early);
      await store.saveCode(late);
      time.set(new Date(t0 + 59_999));
      expect(await store.useCode(early.id)).toMatchObject({ id: early.id });
      time.set(new Date(t0 + 60_000));
      expect(await store.useCode(late.id)).toBeUndefined();
      expect(await store.useCode(early.id)).toBeUndefined();
    });

    it('of 20 redemptions of one code at once, exactly one finds it unused', async () => {
      const { store } = await fresh();
      const code = codeRecord(t0 + 60_000);
      await store.saveCode(code);
      const answers = await Promise.all(Array.from({ length: 20 }, () => store.useCode(code.id)));
      expect(answers.filter((a) => a !== undefined && a.usedAt === undefined)).toHaveLength(1);
      expect(answers.every((a) => a?.id === code.id)).toBe(true);
    });

    it('keeps a session until its expiresAt and forgets a deleted one', async () => {
      const { store, time } = await fresh();
      const session = sessionRecord(t0 + 3_600_000);
      await store.saveSession(session);
      expect(await store.getSession(session.id)).toEqual(session);
      time.set(new Date(t0 + 3_599_999));
      expect(await store.getSession(session.id)).toEqual(session);
      time.set(new Date(t0 + 3_600_000));
      expect(await store.getSession(session.id)).toBeUndefined();
      const other = sessionRecord(t0 + 7_200_000);
      await store.saveSession(other);
      await store.deleteSession(other.id);
      expect(await store.getSession(other.id)).toBeUndefined();
      await expect(store.deleteSession(id())).resolves.toBeUndefined();
    });

    it('useRefresh answers the token unused once and used afterwards; getRefresh shows it used; expiry hides it', async () => {
      const { store, time } = await fresh();
      const refresh = refreshRecord(t0 + 86_400_000);
      await store.saveRefresh(refresh);
      expect(await store.getRefresh(refresh.id)).toEqual(refresh);
      expect(await store.useRefresh(refresh.id)).toEqual(refresh);
      time.advance(5000);
      expect(await store.useRefresh(refresh.id)).toEqual({ ...refresh, usedAt: t0 });
      expect(await store.getRefresh(refresh.id)).toEqual({ ...refresh, usedAt: t0 });
      expect(await store.useRefresh(id())).toBeUndefined();
      time.set(new Date(refresh.expiresAt));
      expect(await store.getRefresh(refresh.id)).toBeUndefined();
      expect(await store.useRefresh(refresh.id)).toBeUndefined();
    });

    it('of 20 rotations of one refresh token at once, exactly one finds it unused', async () => {
      const { store } = await fresh();
      const refresh = refreshRecord(t0 + 86_400_000);
      await store.saveRefresh(refresh);
      const answers = await Promise.all(Array.from({ length: 20 }, () => store.useRefresh(refresh.id)));
      expect(answers.filter((a) => a !== undefined && a.usedAt === undefined)).toHaveLength(1);
    });

    it('remember answers true once per kind and value until the mark expires, then true again', async () => {
      const { store, time } = await fresh();
      const jti = id();
      expect(await store.isRemembered('assertion', jti)).toBe(false);
      expect(await store.remember('assertion', jti, t0 + 10_000)).toBe(true);
      expect(await store.remember('assertion', jti, t0 + 99_000)).toBe(false);
      expect(await store.isRemembered('assertion', jti)).toBe(true);
      // Kinds are apart: a consumed assertion jti is not a revoked access token.
      expect(await store.isRemembered('revoked_jti', jti)).toBe(false);
      expect(await store.remember('revoked_jti', jti, t0 + 10_000)).toBe(true);
      time.set(new Date(t0 + 9_999));
      expect(await store.isRemembered('assertion', jti)).toBe(true);
      time.set(new Date(t0 + 10_000));
      expect(await store.isRemembered('assertion', jti)).toBe(false);
      expect(await store.remember('assertion', jti, t0 + 20_000)).toBe(true);
      expect(await store.isRemembered('assertion', jti)).toBe(true);
    });

    it('of 20 uses of one assertion jti at once, exactly one is accepted', async () => {
      const { store } = await fresh();
      const jti = id();
      const answers = await Promise.all(Array.from({ length: 20 }, () => store.remember('assertion', jti, t0 + 60_000)));
      expect(answers.filter(Boolean)).toHaveLength(1);
    });

    it('hands out copies: a caller editing an answer does not edit the store', async () => {
      const { store } = await fresh();
      const session = sessionRecord(t0 + 60_000);
      await store.saveSession(session);
      const got = (await store.getSession(session.id))!;
      got.sub = 'mallory';
      session.sub = 'eve';
      expect((await store.getSession(session.id))!.sub).toBe('bob');
    });

    it('countFailure counts 1, 2, 3 at the clock, getFailures answers the counter, clearFailures forgets it; keys are apart', async () => {
      const { store, time } = await fresh();
      const key = id();
      expect(await store.getFailures(key)).toBeUndefined();
      expect(await store.countFailure(key, t0 + 60_000)).toEqual({ failures: 1, lastFailureAt: t0, expiresAt: t0 + 60_000 });
      time.advance(1000);
      expect(await store.countFailure(key, t0 + 61_000)).toEqual({ failures: 2, lastFailureAt: t0 + 1000, expiresAt: t0 + 61_000 });
      time.advance(1000);
      expect(await store.countFailure(key, t0 + 62_000)).toEqual({ failures: 3, lastFailureAt: t0 + 2000, expiresAt: t0 + 62_000 });
      expect(await store.getFailures(key)).toEqual({ failures: 3, lastFailureAt: t0 + 2000, expiresAt: t0 + 62_000 });
      const other = id();
      expect((await store.countFailure(other, t0 + 60_000)).failures).toBe(1);
      await store.clearFailures(key);
      expect(await store.getFailures(key)).toBeUndefined();
      expect((await store.getFailures(other))?.failures).toBe(1);
      expect((await store.countFailure(key, t0 + 60_000)).failures).toBe(1);
      await expect(store.clearFailures(id())).resolves.toBeUndefined();
    });

    it('forgets a failure counter from its expiresAt on (to the millisecond): the next failure counts 1 again', async () => {
      const { store, time } = await fresh();
      const key = id();
      await store.countFailure(key, t0 + 10_000);
      await store.countFailure(key, t0 + 10_000);
      time.set(new Date(t0 + 9_999));
      expect((await store.getFailures(key))?.failures).toBe(2);
      time.set(new Date(t0 + 10_000));
      expect(await store.getFailures(key)).toBeUndefined();
      expect(await store.countFailure(key, t0 + 20_000)).toEqual({ failures: 1, lastFailureAt: t0 + 10_000, expiresAt: t0 + 20_000 });
    });

    it('of 20 failures of one key counted at once, each sees its own count: 1 to 20', async () => {
      const { store } = await fresh();
      const key = id();
      const answers = await Promise.all(Array.from({ length: 20 }, () => store.countFailure(key, t0 + 60_000)));
      expect(answers.map((a) => a.failures).sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect((await store.getFailures(key))?.failures).toBe(20);
    });

    it('keeps everything across a restart: a used code stays used, a mark stays, a session stays, a failure counter goes on counting', async () => {
      const { store, time, place } = await fresh();
      const code = codeRecord(t0 + 60_000);
      const session = sessionRecord(t0 + 60_000);
      const refresh = refreshRecord(t0 + 60_000);
      await store.saveCode(code);
      await store.useCode(code.id);
      await store.saveSession(session);
      await store.saveRefresh(refresh);
      await store.useRefresh(refresh.id);
      await store.remember('revoked_family', refresh.familyId, t0 + 60_000);
      const failures = id();
      await store.countFailure(failures, t0 + 60_000);
      await store.countFailure(failures, t0 + 60_000);
      const again = await subject.open(time.clock, place);
      expect(await again.getFailures(failures)).toEqual({ failures: 2, lastFailureAt: t0, expiresAt: t0 + 60_000 });
      expect((await again.countFailure(failures, t0 + 60_000)).failures).toBe(3);
      expect((await again.useCode(code.id))?.usedAt).toBe(t0);
      expect(await again.getSession(session.id)).toEqual(session);
      expect((await again.getRefresh(refresh.id))?.usedAt).toBe(t0);
      expect(await again.isRemembered('revoked_family', refresh.familyId)).toBe(true);
    });
  });
}
