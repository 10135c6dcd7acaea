import type { Logger } from '../lib/logger.js';
import { signingVersion, type Clock, type KeyEntry } from './keys.js';
import type { KeyStore } from './store/types.js';

/**
 * Automatic rotation: each key gets a new version every `interval` seconds, published
 * `publishAhead` seconds before it signs. istiod refetches a jwksUri every 20 min
 * (PILOT_JWT_PUB_KEY_REFRESH_INTERVAL) and never on an unknown kid, so a key must be in the
 * JWKS that long (plus skew) before the first token carries its kid. Pure planning over
 * (entry, settings, now); the scheduler only calls the store's rotate, whose conditional update
 * makes exactly one replica's rotation win when several find a key due at once.
 */

export interface RotationPolicy {
  /** Seconds between the moments successive versions start signing; 0: never rotate automatically. */
  interval: number;
  /** Seconds a new version is published before it signs. */
  publishAhead: number;
}

/** What GET /keys/:keyId answers as `rotation`. */
export interface RotationSchedule {
  interval: number;
  publishAhead: number;
  /** When the next version is published (ISO time); null when automatic rotation is off. */
  nextAt: string | null;
}

/** The policy of one entry: its own interval when it has one, else the factory's. */
export const policyOf = (entry: KeyEntry, defaults: RotationPolicy): RotationPolicy => ({
  interval: entry.rotationInterval ?? defaults.interval,
  publishAhead: defaults.publishAhead,
});

/**
 * When the next version of `entry` is due to be published: `interval` after the newest version
 * started (or starts) signing, minus `publishAhead`, so the new version signs exactly `interval`
 * after the current one did. Undefined when rotation is off.
 */
export function nextRotationAt(entry: KeyEntry, policy: RotationPolicy): Date | undefined {
  if (policy.interval <= 0) return undefined;
  const newest = entry.current;
  const signsFrom = (newest.activateAt ?? newest.createdAt).getTime();
  return new Date(signsFrom + (policy.interval - policy.publishAhead) * 1000);
}

/** The `rotation` field of a key's description at `now`. */
export function describeRotation(entry: KeyEntry, defaults: RotationPolicy): RotationSchedule {
  const policy = policyOf(entry, defaults);
  return { ...policy, nextAt: nextRotationAt(entry, policy)?.toISOString() ?? null };
}

/** The first instant after which some entry's published keys change by schedule (Infinity when none will). */
export function nextScheduledChange(entries: readonly KeyEntry[], defaults: RotationPolicy): number {
  let next = Number.POSITIVE_INFINITY;
  for (const entry of entries) {
    const at = nextRotationAt(entry, policyOf(entry, defaults))?.getTime();
    if (at !== undefined && at < next) next = at;
  }
  return next;
}

/** How long the version signing at `now` has been signing, in seconds. */
export function signingKeyAgeSeconds(entry: KeyEntry, now: Date): number {
  const signer = signingVersion(entry, now);
  return Math.max(0, (now.getTime() - (signer.activateAt ?? signer.createdAt).getTime()) / 1000);
}

/**
 * The scheduler: `tick()` rotates every key that is due at the clock's now. main calls it every
 * second; tests call it at exact instants. A rotation that fails (the database is away) is
 * retried at the next tick.
 */
export function createRotationScheduler(options: { keystore: KeyStore; clock: Clock; logger: Logger; defaults: RotationPolicy }) {
  const { keystore, clock, logger, defaults } = options;
  let running: Promise<number> | undefined;
  let timer: NodeJS.Timeout | undefined;

  async function rotateDue(): Promise<number> {
    const now = clock().getTime();
    let rotated = 0;
    for (const entry of keystore.entries()) {
      const policy = policyOf(entry, defaults);
      const due = nextRotationAt(entry, policy);
      if (due === undefined || due.getTime() > now) continue;
      try {
        await keystore.rotate(entry.keyId, policy.publishAhead);
        rotated += 1;
      } catch (err) {
        logger.warn({ keyId: entry.keyId, reason: (err as Error).message }, 'automatic rotation failed; retrying at the next check');
      }
    }
    return rotated;
  }

  return {
    /** Rotates what is due now; one pass at a time. Resolves with the number of keys rotated. */
    tick(): Promise<number> {
      running ??= rotateDue().finally(() => {
        running = undefined;
      });
      return running;
    },
    /** Checks every `everyMs` (real time) until stop. */
    start(everyMs = 1000): void {
      if (timer) return;
      timer = setInterval(() => void this.tick(), everyMs);
      timer.unref();
    },
    stop(): void {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}
