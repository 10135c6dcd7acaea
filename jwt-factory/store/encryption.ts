import { createCipheriv, createDecipheriv, createHash, randomBytes, type JsonWebKey } from 'node:crypto';

/**
 * Encryption at rest for private keys: AES-256-GCM (NIST SP 800-38D) with a 96-bit random
 * nonce per seal and the keyId and kid as associated data, so a sealed key copied onto
 * another keyId or version fails to open instead of signing for it. node:crypto does the
 * cipher; this module only frames it.
 *
 * Sealed text: `jfk1.<keyRef>.<nonce>.<ciphertext>.<tag>` (base64url parts). `keyRef` is the
 * first 8 bytes of SHA-256 over the encryption key: it names which key sealed a value (the
 * re-encrypt command skips what the new key already sealed) without revealing the key.
 */

const PREFIX = 'jfk1';
const NONCE_BYTES = 12;

/** Seals and opens private JWKs for one keyId and kid. */
export interface KeySealer {
  /** The reference of the key new seals use. */
  readonly keyRef: string;
  seal(jwk: JsonWebKey, keyId: string, kid: string): string;
  open(sealed: string, keyId: string, kid: string): JsonWebKey;
  /** The keyRef a sealed text was made with (undefined when it is not sealed text). */
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

/** The associated data binding a sealed key to its place: format, keyId, kid. */
const associatedData = (keyId: string, kid: string) => Buffer.from(`${PREFIX}\0${keyId}\0${kid}`, 'utf8');

/**
 * A sealer over `current` (seals and opens) and optional `older` keys (open only), so a
 * store keeps reading while `re-encrypt` moves every key onto the current one.
 */
export function createKeySealer(current: Buffer, older: readonly Buffer[] = []): KeySealer {
  const keys = new Map<string, Buffer>([[refOfKey(current), current]]);
  for (const key of older) keys.set(refOfKey(key), key);
  const keyRef = refOfKey(current);
  const refOf = (sealed: string) => {
    const parts = sealed.split('.');
    return parts.length === 5 && parts[0] === PREFIX ? parts[1] : undefined;
  };
  return {
    keyRef,
    refOf,
    seal(jwk, keyId, kid) {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', current, nonce);
      cipher.setAAD(associatedData(keyId, kid));
      const body = Buffer.concat([cipher.update(JSON.stringify(jwk), 'utf8'), cipher.final()]);
      return [PREFIX, keyRef, nonce.toString('base64url'), body.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
    },
    open(sealed, keyId, kid) {
      const ref = refOf(sealed);
      if (ref === undefined) throw new Error('not an encrypted key');
      const key = keys.get(ref);
      if (!key) throw new Error(`encrypted with a key not given (keyRef ${ref}): set KEY_ENCRYPTION_KEY or KEY_ENCRYPTION_KEY_OLD to it`);
      const [, , nonce, body, tag] = sealed.split('.') as [string, string, string, string, string];
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(nonce, 'base64url'));
      decipher.setAAD(associatedData(keyId, kid));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      let text: string;
      try {
        text = Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
      } catch {
        // GCM's tag check: a wrong key, a tampered value or one moved to another keyId/kid.
        throw new Error('encrypted key does not open (wrong key, tampered, or moved to another keyId or kid)');
      }
      return JSON.parse(text) as JsonWebKey;
    },
  };
}
