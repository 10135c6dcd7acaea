import { randomBytes } from 'node:crypto';
import { open, readFile, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { AppError } from '../../lib/errors.js';

/** What a lock file holds: who took it, so another process can tell a crashed owner from a live one. */
interface LockOwner {
  host: string;
  pid: number;
  nonce: string;
}

export interface FileLockOptions {
  /** A lock older than this is a crash leftover whoever holds it (a holder keeps it for one key generation and one write). Default 30 s. */
  staleMs?: number;
  /** How long `withLock` waits before answering 503 `key_store_busy`. Default 10 s. */
  timeoutMs?: number;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Per-keyId locks that hold across processes sharing one folder (WORKERS, or replicas on a
 * shared volume): `<dir>/.<keyId>.lock`, created with O_EXCL, so exactly one creator
 * succeeds. A lock whose owner died (same host, pid gone) or that is older than `staleMs` is
 * taken over; release removes the file only while it still holds our nonce. The leading dot
 * keeps the loader from reading it as a key.
 */
export function createFileLocks(dir: string, options: FileLockOptions = {}) {
  const staleMs = options.staleMs ?? 30_000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const host = hostname();
  const lockPath = (keyId: string) => path.join(dir, `.${keyId}.lock`);

  async function readOwner(file: string): Promise<{ owner: Partial<LockOwner>; text: string; ageMs: number } | undefined> {
    try {
      const [text, s] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
      let owner: Partial<LockOwner> = {};
      try {
        owner = JSON.parse(text) as Partial<LockOwner>;
      } catch {
        /* half-written by a crash: only its age tells */
      }
      return { owner, text, ageMs: Date.now() - s.mtimeMs };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Takes keyId's lock if it is free (or stale); returns its release, or undefined when another live process holds it. */
  async function tryAcquire(keyId: string): Promise<(() => Promise<void>) | undefined> {
    const file = lockPath(keyId);
    const me: LockOwner = { host, pid: process.pid, nonce: randomBytes(8).toString('hex') };
    const text = JSON.stringify(me);
    try {
      const handle = await open(file, 'wx', 0o600);
      try {
        await handle.writeFile(text);
      } finally {
        await handle.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const held = await readOwner(file);
      if (!held) return tryAcquire(keyId);
      const dead = held.owner.host === host && typeof held.owner.pid === 'number' && !alive(held.owner.pid);
      if (!dead && held.ageMs < staleMs) return undefined;
      // The owner crashed: remove its lock if it is still that one, then compete again.
      const again = await readOwner(file);
      if (again?.text === held.text) await unlink(file).catch(() => undefined);
      return tryAcquire(keyId);
    }
    return async () => {
      const still = await readOwner(file);
      if (still?.text === text) await unlink(file).catch(() => undefined);
    };
  }

  return {
    tryAcquire,
    /** Runs `task` holding keyId's lock; waits for it up to `timeoutMs`, then answers 503 `key_store_busy`. */
    async withLock<T>(keyId: string, task: () => Promise<T>): Promise<T> {
      const deadline = Date.now() + timeoutMs;
      let wait = 5;
      for (;;) {
        const release = await tryAcquire(keyId);
        if (release) {
          try {
            return await task();
          } finally {
            await release();
          }
        }
        if (Date.now() > deadline) {
          throw new AppError('key_store_busy', 503, `Another process holds the lock of key "${keyId}" for longer than ${timeoutMs} ms: retry shortly.`, { expose: true });
        }
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(wait * 2, 100);
      }
    },
  };
}
