import type { Clock } from '../keys.js';

/**
 * Growing delay after failed logins, per username and per client address (OWASP Authentication
 * Cheat Sheet, "Protect against automated attacks"): after `threshold` failures in a row the key
 * is locked for 30 s, doubling with each further failure up to 15 minutes. Counting applies to
 * any username, known or not, so a lockout tells nothing about which users exist. Held in
 * memory: a restart forgives, which a local provider can afford.
 */

const BASE_DELAY_MS = 30_000;
const MAX_DELAY_MS = 15 * 60_000;
/** An address sees more users than one person: it is locked only after this many times the user threshold. */
const ADDRESS_FACTOR = 4;
/** The most keys remembered: a flood of made-up usernames cannot grow memory without bound. */
const MAX_KEYS = 100_000;

export interface LoginLimiter {
  /** Epoch ms until which a login for this user or address is refused; 0 when it may try now. */
  lockedUntil(username: string, address: string): number;
  /** Counts a failure for both keys. */
  failed(username: string, address: string): void;
  /** Forgets the user's failures after a successful login. */
  succeeded(username: string): void;
}

/** The limiter, with the clock injected so tests stand at exact instants. */
export function createLoginLimiter(options: { threshold: number; clock: Clock }): LoginLimiter {
  const entries = new Map<string, { failures: number; lockedUntil: number }>();
  const now = () => options.clock().getTime();
  const thresholdOf = (key: string) => (key.startsWith('addr:') ? options.threshold * ADDRESS_FACTOR : options.threshold);

  const count = (key: string) => {
    const entry = entries.get(key) ?? { failures: 0, lockedUntil: 0 };
    entry.failures += 1;
    const over = entry.failures - thresholdOf(key);
    if (over >= 0) entry.lockedUntil = now() + Math.min(BASE_DELAY_MS * 2 ** over, MAX_DELAY_MS);
    entries.delete(key);
    entries.set(key, entry);
    if (entries.size > MAX_KEYS) entries.delete(entries.keys().next().value!);
  };

  return {
    lockedUntil(username, address) {
      const t = now();
      const until = Math.max(entries.get(`user:${username}`)?.lockedUntil ?? 0, entries.get(`addr:${address}`)?.lockedUntil ?? 0);
      return until > t ? until : 0;
    },
    failed(username, address) {
      count(`user:${username}`);
      count(`addr:${address}`);
    },
    succeeded(username) {
      entries.delete(`user:${username}`);
    },
  };
}
