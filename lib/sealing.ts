import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * Encryption at rest for what the suite's stores must not hold in the clear (private keys,
 * a gateway session's tokens): AES-256-GCM (NIST SP 800-38D) with a 96-bit random nonce per
 * seal and associated data that names the value's place, so a sealed value copied elsewhere
 * fails to open instead of being used there. node:crypto does the cipher; this module only frames it.
 *
 * Sealed text: `<prefix>.<keyRef>.<nonce>.<ciphertext>.<tag>` (base64url parts). `keyRef` is
 * the first 8 bytes of SHA-256 over the encryption key: it names which key sealed a value (a
 * re-encryption skips what the new key already sealed) without revealing the key.
 */

const NONCE_BYTES = 12;

/** Seals and opens text bound to its place (`place`: the parts of the associated data). */
export interface Sealer {
  /** The reference of the key new seals use. */
  readonly keyRef: string;
  seal(text: string, place: readonly string[]): string;
  open(sealed: string, place: readonly string[]): string;
  /** The keyRef a sealed text was made with (undefined when it is not sealed text of this prefix). */
  refOf(sealed: string): string | undefined;
}

/** Decodes a base64 (or base64url) 32-byte key; throws a sentence when it is anything else. */
export function parseEncryptionKey(text: string): Buffer {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) throw new Error('must be 32 random bytes in base64 (openssl rand -base64 32)');
  const key = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (key.length !== 32) throw new Error(`must be 32 random bytes in base64 (openssl rand -base64 32), got ${key.length} bytes`);
  return key;
}

const refOfKey = (key: Buffer) => createHash('sha256').update(key).digest().subarray(0, 8).toString('base64url');

/**
 * A sealer over `current` (seals and opens) and optional `older` keys (open only), so a store
 * keeps reading while everything moves onto the current one. `prefix` names the format (it
 * starts the text and the associated data); `settings` names the settings that give keys, for
 * the sentence a value sealed with a key not given answers.
 */
export function createSealer(options: { prefix: string; current: Buffer; older?: readonly Buffer[]; settings: string }): Sealer {
  const { prefix, current } = options;
  const keys = new Map<string, Buffer>([[refOfKey(current), current]]);
  for (const key of options.older ?? []) keys.set(refOfKey(key), key);
  const keyRef = refOfKey(current);
  const associatedData = (place: readonly string[]) => Buffer.from([prefix, ...place].join('\0'), 'utf8');
  const refOf = (sealed: string) => {
    const parts = sealed.split('.');
    return parts.length === 5 && parts[0] === prefix ? parts[1] : undefined;
  };
  return {
    keyRef,
    refOf,
    seal(text, place) {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', current, nonce);
      cipher.setAAD(associatedData(place));
      const body = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
      return [prefix, keyRef, nonce.toString('base64url'), body.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
    },
    open(sealed, place) {
      const ref = refOf(sealed);
      if (ref === undefined) throw new Error('not an encrypted value');
      const key = keys.get(ref);
      if (!key) throw new Error(`encrypted with a key not given (keyRef ${ref}): set ${options.settings} to it`);
      const [, , nonce, body, tag] = sealed.split('.') as [string, string, string, string, string];
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(nonce, 'base64url'));
      decipher.setAAD(associatedData(place));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      try {
        return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
      } catch {
        // GCM's tag check: a wrong key, a tampered value or one moved to another place.
        throw new Error('does not open (wrong key, tampered, or moved to another place)');
      }
    },
  };
}
