import { createHash } from 'node:crypto';
import type { Clock } from '../keys.js';
import { clientLocked, OAuthError } from './errors.js';
import type { FailureRecord, OidcStore } from './store.js';

/**
 * Growing delay after failed logins and failed client authentications (OWASP Authentication
 * Cheat Sheet, "Protect against automated attacks"; RFC 6749 §2.3.1 and §4.3.2 ask the server to
 * protect password-checking endpoints against brute force). After `threshold` failures in a row
 * a key is locked for 30 s, doubling with each further failure up to 15 minutes; a success
 * clears it, and a counter with no failure for 24 hours is forgotten. While a key is locked no
 * secret is checked at all, the right one included: otherwise an attacker would go on guessing
 * and learn the answer from the one that is accepted.
 *
 * The counters live in the OidcStore, so a restart keeps them and every replica on one
 * database shares them. Keys are stored as the SHA-256 of `kind:value`: a copy of the store
 * lists no username, address or client that was tried. Any username is counted, known or not,
 * so a lockout tells nothing about which users exist.
 */

const BASE_DELAY_MS = 30_000;
const MAX_DELAY_MS = 15 * 60_000;
/** A counter with no new failure for this long is forgotten (and swept from the store). */
export const FORGET_AFTER_MS = 24 * 3_600_000;
/** An address sees more users than one person: it is locked only after this many times the user threshold. */
const ADDRESS_FACTOR = 4;
/** The most keys counted in memory while the store cannot be reached: a flood cannot grow memory without bound. */
const MAX_LOCAL_KEYS = 100_000;

/** What a counter counts: a username (any, known or not), a client address, a registered client_id. */
export interface LimitKey {
  kind: 'user' | 'address' | 'client';
  value: string;
}

/** The outcome of a guarded check; `retryAfter` in whole seconds. */
export type Attempt = { outcome: 'ok' } | { outcome: 'failed' } | { outcome: 'locked'; retryAfter: number };

export interface AttemptOptions {
  /** Keys cleared when the check succeeds (the user, not the address the user came from). */
  clears?: readonly LimitKey[];
  /**
   * While the store answers temporarily_unavailable: `refuse` passes the 503 on (a login needs
   * the store anyway, for its session); `count-locally` counts in this process's memory until
   * the store is back (client authentication, so that a client_credentials grant, which needs
   * no other state, goes on during an outage and guessing stays throttled, per process).
   */
  whenUnreachable?: 'refuse' | 'count-locally';
}

export interface FailureLimiter {
  /** Runs `check` unless one of `keys` is locked; a false answer counts a failure for every key. */
  attempt(keys: readonly LimitKey[], check: () => Promise<boolean>, options?: AttemptOptions): Promise<Attempt>;
}

type FailureCounters = Pick<OidcStore, 'countFailure' | 'getFailures' | 'clearFailures'>;

/** Epoch ms until which a counter locks its key; 0 when below the threshold. */
export function lockedUntil(record: FailureRecord | undefined, threshold: number): number {
  if (!record || record.failures < threshold) return 0;
  return record.lastFailureAt + Math.min(BASE_DELAY_MS * 2 ** (record.failures - threshold), MAX_DELAY_MS);
}

/** The stored name of a key: the SHA-256 of `kind:value`, base64url. */
export const storedKey = (key: LimitKey): string => createHash('sha256').update(`${key.kind}:${key.value}`, 'utf8').digest('base64url');

/** Counters in this process's memory, the most recently failed kept, with the store's semantics. */
function memoryCounters(clock: Clock): FailureCounters {
  const entries = new Map<string, FailureRecord>();
  const now = () => clock().getTime();
  const live = (key: string) => {
    const record = entries.get(key);
    return record && record.expiresAt > now() ? { ...record } : undefined;
  };
  return {
    async countFailure(key, expiresAt) {
      const record = { failures: (live(key)?.failures ?? 0) + 1, lastFailureAt: now(), expiresAt };
      entries.delete(key);
      entries.set(key, record);
      if (entries.size > MAX_LOCAL_KEYS) entries.delete(entries.keys().next().value!);
      return { ...record };
    },
    getFailures: async (key) => live(key),
    clearFailures: async (key) => void entries.delete(key),
  };
}

const unreachable = (err: unknown) => err instanceof OAuthError && err.code === 'temporarily_unavailable';

/** The limiter over the store's counters, with the clock injected so tests stand at exact instants. */
export function createFailureLimiter(options: { store: OidcStore; threshold: number; clock: Clock }): FailureLimiter {
  const { store, clock } = options;
  const local = memoryCounters(clock);
  const thresholdOf = (key: LimitKey) => (key.kind === 'address' ? options.threshold * ADDRESS_FACTOR : options.threshold);

  /** The store's counters, or for `count-locally` the memory's whenever the store answers temporarily_unavailable. */
  const countersFor = (mode: AttemptOptions['whenUnreachable']): FailureCounters => {
    if (mode !== 'count-locally') return store;
    const either =
      <A extends unknown[], R>(op: (c: FailureCounters) => (...args: A) => Promise<R>) =>
      (...args: A): Promise<R> =>
        op(store)(...args).catch((err: unknown) => {
          if (!unreachable(err)) throw err;
          return op(local)(...args);
        });
    return { countFailure: either((c) => c.countFailure), getFailures: either((c) => c.getFailures), clearFailures: either((c) => c.clearFailures) };
  };

  return {
    async attempt(keys, check, attemptOptions = {}) {
      const counters = countersFor(attemptOptions.whenUnreachable);
      const records = await Promise.all(keys.map((key) => counters.getFailures(storedKey(key))));
      const now = clock().getTime();
      const until = Math.max(0, ...records.map((record, i) => lockedUntil(record, thresholdOf(keys[i]!))));
      if (until > now) return { outcome: 'locked', retryAfter: Math.ceil((until - now) / 1000) };
      if (await check()) {
        // Only a key that has failures is cleared: an ordinary success (every client_credentials
        // call) must not write to the store.
        const clean = new Set(keys.filter((_key, i) => records[i] === undefined));
        await Promise.all((attemptOptions.clears ?? []).filter((key) => !clean.has(key)).map((key) => counters.clearFailures(storedKey(key))));
        return { outcome: 'ok' };
      }
      await Promise.all(keys.map((key) => counters.countFailure(storedKey(key), clock().getTime() + FORGET_AFTER_MS)));
      return { outcome: 'failed' };
    },
  };
}

/**
 * A client secret checked under the client's counter (RFC 6749 §2.3.1): answers whether it
 * matched; while the client is locked throws 401 invalid_client with Retry-After, the right
 * secret included. An outage of the store counts in memory (see `count-locally`).
 */
export async function limitedClientCheck(limiter: FailureLimiter, clientId: string, check: () => Promise<boolean>): Promise<boolean> {
  const key: LimitKey = { kind: 'client', value: clientId };
  const attempt = await limiter.attempt([key], check, { clears: [key], whenUnreachable: 'count-locally' });
  if (attempt.outcome === 'locked') throw clientLocked(attempt.retryAfter);
  return attempt.outcome === 'ok';
}
