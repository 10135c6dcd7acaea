import { AppError } from '../../lib/errors.js';
import { fingerprint, type KeyEntry, type KeyVersion } from '../keys.js';
import type { ChangeListener } from './types.js';

/**
 * The in-memory side every store shares: the entries this process signs and verifies with,
 * a revision counter for caches, and change listeners. Signing reads only this.
 */
export function createEntryMemory() {
  const entries = new Map<string, KeyEntry>();
  const listeners: ChangeListener[] = [];
  let revision = 0;

  const changed = (keyId: string, origin: 'local' | 'reload') => {
    revision += 1;
    for (const listener of listeners) listener(keyId, origin);
  };

  return {
    entries,
    changed,
    /** Counts a change no single keyId names (a completed load). */
    bump: () => {
      revision += 1;
    },
    /**
     * The one way an entry enters memory: listeners (the JWKS cache) hear of it when the keyId
     * is new or its versions moved, never when a re-read finds the same versions (tokens with
     * made-up kids trigger re-reads and must not churn the JWKS cache). Returns the entry kept.
     */
    remember(entry: KeyEntry, origin: 'local' | 'reload'): KeyEntry {
      const known = entries.get(entry.keyId);
      if (known && fingerprint(known) === fingerprint(entry)) return known;
      entries.set(entry.keyId, entry);
      changed(entry.keyId, origin);
      return entry;
    },
    revision: () => revision,
    onChange(listener: ChangeListener): void {
      listeners.push(listener);
    },
    list: (): string[] => [...entries.keys()].sort(),
    size: (): number => entries.size,
    sorted: (): KeyEntry[] => [...entries.values()].sort((a, b) => (a.keyId < b.keyId ? -1 : 1)),
  };
}

/** The KeyStore members every store answers from memory alone, in one place. */
export function memoryReaders(memory: ReturnType<typeof createEntryMemory>) {
  return {
    revision: memory.revision,
    onChange: memory.onChange,
    list: memory.list,
    size: memory.size,
    entries: memory.sorted,
  };
}

/** Runs tasks one after another per keyId within this process (one create or rotate at a time). */
export function createKeyedQueue() {
  const tails = new Map<string, Promise<unknown>>();
  const run = <T>(keyId: string, task: () => Promise<T>): Promise<T> => {
    const previous = tails.get(keyId) ?? Promise.resolve();
    const next = previous.then(task, task);
    const settled = next.catch(() => undefined);
    tails.set(keyId, settled);
    void settled.then(() => {
      if (tails.get(keyId) === settled) tails.delete(keyId);
    });
    return next;
  };
  /** True while a task of keyId is queued or running. */
  const busy = (keyId: string): boolean => tails.has(keyId);
  return Object.assign(run, { busy });
}

/** 429 for a rotation that would unpublish a version whose tokens may still be valid (MAX_KEY_VERSIONS). */
export function rotationRefused(keyId: string, refused: { oldest: KeyVersion; freeAt: Date }, now: Date, maxVersions: number): AppError {
  const { oldest, freeAt } = refused;
  const seconds = Math.max(1, Math.ceil((freeAt.getTime() - now.getTime()) / 1000));
  return new AppError(
    'rotation_limit_reached',
    429,
    `Key "${keyId}" publishes ${maxVersions} versions, its MAX_KEY_VERSIONS limit, and the oldest (kid ${oldest.kid}) may have signed tokens that stay valid until ${freeAt.toISOString()}: rotating now would unpublish it and fail them. Nothing was rotated; retry in ${seconds} s, or raise MAX_KEY_VERSIONS.`,
    { headers: { 'Retry-After': String(seconds) }, details: { maxVersions, oldestKid: oldest.kid, freeAt: freeAt.toISOString() } },
  );
}
