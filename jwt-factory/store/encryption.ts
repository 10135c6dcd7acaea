import type { JsonWebKey } from 'node:crypto';
import { createSealer, parseEncryptionKey } from '../../lib/sealing.js';

/**
 * Encryption at rest for private keys (lib/sealing.ts: AES-256-GCM) with the keyId and kid as
 * associated data, so a sealed key copied onto another keyId or version fails to open instead
 * of signing for it. Sealed text: `jfk1.<keyRef>.<nonce>.<ciphertext>.<tag>`.
 */

export { parseEncryptionKey };

/** Seals and opens private JWKs for one keyId and kid. */
export interface KeySealer {
  /** The reference of the key new seals use. */
  readonly keyRef: string;
  seal(jwk: JsonWebKey, keyId: string, kid: string): string;
  open(sealed: string, keyId: string, kid: string): JsonWebKey;
  /** The keyRef a sealed text was made with (undefined when it is not sealed text). */
  refOf(sealed: string): string | undefined;
}

/**
 * A sealer over `current` (seals and opens) and optional `older` keys (open only), so a
 * store keeps reading while `re-encrypt` moves every key onto the current one.
 */
export function createKeySealer(current: Buffer, older: readonly Buffer[] = []): KeySealer {
  const sealer = createSealer({ prefix: 'jfk1', current, older, settings: 'KEY_ENCRYPTION_KEY or KEY_ENCRYPTION_KEY_OLD' });
  return {
    keyRef: sealer.keyRef,
    refOf: sealer.refOf,
    seal: (jwk, keyId, kid) => sealer.seal(JSON.stringify(jwk), [keyId, kid]),
    open(sealed, keyId, kid) {
      if (sealer.refOf(sealed) === undefined) throw new Error('not an encrypted key');
      try {
        return JSON.parse(sealer.open(sealed, [keyId, kid])) as JsonWebKey;
      } catch (err) {
        const message = (err as Error).message;
        throw new Error(message.startsWith('does not open') ? 'encrypted key does not open (wrong key, tampered, or moved to another keyId or kid)' : message);
      }
    },
  };
}
