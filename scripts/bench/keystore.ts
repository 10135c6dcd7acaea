import type { JWK } from 'jose';
import { createKeyStore } from '../../jwt-factory/keystore.js';
import { silentLogger } from '../../lib/logger.js';

/**
 * The bench reads and writes key files only through the factory's own key store, so the
 * on-disk format has one owner and the bench follows it when it changes.
 */
const openStore = (dir: string) =>
  createKeyStore({ dir, clock: () => new Date(), logger: silentLogger(), retireAfterSeconds: 3660 });

/** The current private key of `keyId` as a JWK, for the crypto ceiling's child process (stdin only). */
export async function exportPrivateJwk(dir: string, keyId: string): Promise<JWK> {
  const entry = await openStore(dir).get(keyId);
  if (!entry) throw new Error(`no key file for ${keyId} in ${dir}`);
  return entry.current.signingKey.export({ format: 'jwk' }) as JWK;
}

/**
 * Creates `count` keys named `<prefix>-<n>` in `dir` with the factory's key store (generation in
 * the thread pool, atomic 0600 writes), `concurrency` at a time. Resolves with the elapsed ms.
 */
export async function createKeyFiles(
  dir: string,
  options: { count: number; prefix: string; alg: 'ES256' | 'EdDSA' | 'RS256'; concurrency: number; onProgress?: (done: number) => void },
): Promise<number> {
  const store = openStore(dir);
  const started = performance.now();
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < options.count) {
      const n = next;
      next += 1;
      await store.getOrCreate(`${options.prefix}-${n}`, options.alg);
      done += 1;
      if (done % 1000 === 0) options.onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return performance.now() - started;
}
