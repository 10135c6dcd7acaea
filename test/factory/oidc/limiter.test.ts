import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { temporarilyUnavailable } from '../../../jwt-factory/oidc/errors.js';
import { createFailureLimiter, FORGET_AFTER_MS, type LimitKey } from '../../../jwt-factory/oidc/limiter.js';
import { createFileOidcStore, type OidcStore } from '../../../jwt-factory/oidc/store.js';
import { manualClock } from '../harness.js';

let dir: string;
let store: OidcStore;
let time: ReturnType<typeof manualClock>;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'limiter-'));
  time = manualClock(new Date('2026-06-01T12:00:00Z'));
  store = createFileOidcStore({ dir, clock: time.clock });
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const user = (value: string): LimitKey => ({ kind: 'user', value });
const address = (value: string): LimitKey => ({ kind: 'address', value });
const wrong = async () => false;
const right = async () => true;

/** `n` failed logins of `name` from `from`. */
async function fail(limiter: ReturnType<typeof createFailureLimiter>, name: string, n: number, from = '10.0.0.1') {
  for (let i = 0; i < n; i += 1) expect((await limiter.attempt([user(name), address(from)], wrong, { clears: [user(name)] })).outcome).toBe('failed');
}

describe('the failure limiter over the OidcStore', () => {
  it('locks a key at the threshold for 30 s to the millisecond, doubling per further failure up to 15 minutes', async () => {
    const limiter = createFailureLimiter({ store, threshold: 5, clock: time.clock });
    await fail(limiter, 'alice', 4);
    expect((await limiter.attempt([user('alice')], right)).outcome).toBe('ok');
    // The success above cleared nothing (no `clears`): the fifth failure locks.
    await fail(limiter, 'alice', 1);
    expect(await limiter.attempt([user('alice')], right)).toEqual({ outcome: 'locked', retryAfter: 30 });
    time.advance(29_999);
    expect(await limiter.attempt([user('alice')], right)).toEqual({ outcome: 'locked', retryAfter: 1 });
    time.advance(1);
    await fail(limiter, 'alice', 1);
    expect(await limiter.attempt([user('alice')], right)).toEqual({ outcome: 'locked', retryAfter: 60 });
    const delays: number[] = [];
    for (let i = 0; i < 8; i += 1) {
      const locked = await limiter.attempt([user('alice')], right);
      if (locked.outcome !== 'locked') throw new Error('not locked');
      delays.push(locked.retryAfter);
      time.advance(locked.retryAfter * 1000);
      await fail(limiter, 'alice', 1);
    }
    expect(delays).toEqual([60, 120, 240, 480, 900, 900, 900, 900]);
  });

  it('does not run the check while a key is locked, so the right secret is refused and costs nothing', async () => {
    const limiter = createFailureLimiter({ store, threshold: 2, clock: time.clock });
    await fail(limiter, 'bob', 2);
    let checks = 0;
    const counted = async () => {
      checks += 1;
      return true;
    };
    expect((await limiter.attempt([user('bob')], counted)).outcome).toBe('locked');
    expect(checks).toBe(0);
    time.advance(30_000);
    expect((await limiter.attempt([user('bob')], counted, { clears: [user('bob')] })).outcome).toBe('ok');
    expect(checks).toBe(1);
    // Cleared: one more failure is the first of a new run.
    await fail(limiter, 'bob', 1);
    expect((await limiter.attempt([user('bob')], right)).outcome).toBe('ok');
  });

  it('counts an address across usernames, known or not, and locks it at 4x the threshold; a success clears the user, not the address', async () => {
    const limiter = createFailureLimiter({ store, threshold: 2, clock: time.clock });
    for (let i = 0; i < 7; i += 1) await fail(limiter, `made-up-${i}`, 1, '10.9.9.9');
    expect((await limiter.attempt([user('carol'), address('10.9.9.9')], right, { clears: [user('carol')] })).outcome).toBe('ok');
    await fail(limiter, 'made-up-7', 1, '10.9.9.9');
    expect(await limiter.attempt([user('carol'), address('10.9.9.9')], right)).toEqual({ outcome: 'locked', retryAfter: 30 });
    // Another address is free, and carol herself was never locked.
    expect((await limiter.attempt([user('carol'), address('10.1.1.1')], right)).outcome).toBe('ok');
  });

  it('forgets a run of failures 24 hours after the last one', async () => {
    const limiter = createFailureLimiter({ store, threshold: 3, clock: time.clock });
    await fail(limiter, 'dave', 2);
    time.advance(FORGET_AFTER_MS);
    await fail(limiter, 'dave', 2);
    expect((await limiter.attempt([user('dave')], right)).outcome).toBe('ok');
    await fail(limiter, 'dave', 1);
    expect((await limiter.attempt([user('dave')], right)).outcome).toBe('locked');
  });

  it('stores keys hashed: the state file names no username, address or client that was tried', async () => {
    const limiter = createFailureLimiter({ store, threshold: 5, clock: time.clock });
    await fail(limiter, 'erin-the-admin', 2, '192.0.2.77');
    await limiter.attempt([{ kind: 'client', value: 'payments-service' }], wrong);
    const text = await readFile(path.join(dir, 'state.json'), 'utf8');
    expect(Object.keys(JSON.parse(text).failures)).toHaveLength(3);
    for (const tried of ['erin-the-admin', '192.0.2.77', 'payments-service']) expect(text).not.toContain(tried);
  });

  it('keeps counting across a restart: a new limiter over the same folder locks at the threshold', async () => {
    await fail(createFailureLimiter({ store, threshold: 5, clock: time.clock }), 'frank', 3);
    const restarted = createFailureLimiter({ store: createFileOidcStore({ dir, clock: time.clock }), threshold: 5, clock: time.clock });
    await fail(restarted, 'frank', 2);
    expect((await restarted.attempt([user('frank')], right)).outcome).toBe('locked');
  });
});

describe('the failure limiter while the store cannot be reached', () => {
  /** The store, answering temporarily_unavailable for its counters while `down` is set. */
  function flaky() {
    const state = { down: false };
    const failing = <A extends unknown[], R>(op: (...args: A) => Promise<R>) => (...args: A) => (state.down ? Promise.reject(temporarilyUnavailable('down')) : op(...args));
    const wrapped: OidcStore = { ...store, countFailure: failing(store.countFailure), getFailures: failing(store.getFailures), clearFailures: failing(store.clearFailures) };
    return { state, wrapped };
  }

  it('refuse passes the 503 temporarily_unavailable on and never runs the check: a login does not fail open', async () => {
    const { state, wrapped } = flaky();
    const limiter = createFailureLimiter({ store: wrapped, threshold: 5, clock: time.clock });
    state.down = true;
    let checks = 0;
    await expect(
      limiter.attempt([user('alice')], async () => {
        checks += 1;
        return true;
      }),
    ).rejects.toMatchObject({ code: 'temporarily_unavailable', status: 503, headers: { 'Retry-After': '2' } });
    expect(checks).toBe(0);
  });

  it('count-locally counts in memory during the outage (still locking), and the store counters again once it is back', async () => {
    const { state, wrapped } = flaky();
    const limiter = createFailureLimiter({ store: wrapped, threshold: 3, clock: time.clock });
    const client: LimitKey = { kind: 'client', value: 'servicea' };
    const options = { clears: [client], whenUnreachable: 'count-locally' as const };
    await limiter.attempt([client], wrong, options);
    state.down = true;
    expect((await limiter.attempt([client], right, options)).outcome).toBe('ok');
    for (let i = 0; i < 3; i += 1) await limiter.attempt([client], wrong, options);
    expect(await limiter.attempt([client], right, options)).toEqual({ outcome: 'locked', retryAfter: 30 });
    state.down = false;
    // The store's own counter holds the one failure from before the outage.
    expect((await limiter.attempt([client], right, options)).outcome).toBe('ok');
  });

  it('an error that is not an outage is passed on in either mode', async () => {
    const broken: OidcStore = { ...store, getFailures: () => Promise.reject(new Error('bug')) };
    const limiter = createFailureLimiter({ store: broken, threshold: 3, clock: time.clock });
    await expect(limiter.attempt([user('x')], right, { whenUnreachable: 'count-locally' })).rejects.toThrow('bug');
    await expect(limiter.attempt([user('x')], right)).rejects.toThrow('bug');
  });
});
