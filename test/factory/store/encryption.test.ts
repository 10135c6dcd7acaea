import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createKeySealer, parseEncryptionKey } from '../../../jwt-factory/store/encryption.js';

const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

describe('encryption at rest (AES-256-GCM)', () => {
  it('seals a private JWK into text that holds none of its members and opens it back', () => {
    const sealer = createKeySealer(randomBytes(32));
    const sealed = sealer.seal(jwk, 'svc', 'kid-1');
    expect(sealed.startsWith(`jfk1.${sealer.keyRef}.`)).toBe(true);
    expect(sealed).not.toContain(jwk.d);
    expect(sealed).not.toContain('"d"');
    expect(sealer.open(sealed, 'svc', 'kid-1')).toEqual(jwk);
  });

  it('uses a fresh nonce per seal: the same key sealed twice differs', () => {
    const sealer = createKeySealer(randomBytes(32));
    expect(sealer.seal(jwk, 'svc', 'k')).not.toBe(sealer.seal(jwk, 'svc', 'k'));
  });

  it('refuses a sealed key moved to another keyId or kid (associated data)', () => {
    const sealer = createKeySealer(randomBytes(32));
    const sealed = sealer.seal(jwk, 'svc', 'kid-1');
    expect(() => sealer.open(sealed, 'other', 'kid-1')).toThrow(/does not open/);
    expect(() => sealer.open(sealed, 'svc', 'kid-2')).toThrow(/does not open/);
  });

  it('refuses a tampered ciphertext', () => {
    const sealer = createKeySealer(randomBytes(32));
    const parts = sealer.seal(jwk, 'svc', 'k').split('.');
    const body = Buffer.from(parts[3]!, 'base64url');
    body[0] = body[0]! ^ 1;
    parts[3] = body.toString('base64url');
    expect(() => sealer.open(parts.join('.'), 'svc', 'k')).toThrow(/does not open/);
  });

  it('opens with an older key given for reading, and names a key it was not given', () => {
    const old = randomBytes(32);
    const sealedByOld = createKeySealer(old).seal(jwk, 'svc', 'k');
    expect(createKeySealer(randomBytes(32), [old]).open(sealedByOld, 'svc', 'k')).toEqual(jwk);
    expect(() => createKeySealer(randomBytes(32)).open(sealedByOld, 'svc', 'k')).toThrow(/KEY_ENCRYPTION_KEY_OLD/);
  });

  it('parses 32 bytes of base64 or base64url and refuses anything else with a sentence', () => {
    const key = randomBytes(32);
    expect(parseEncryptionKey(key.toString('base64'))).toEqual(key);
    expect(parseEncryptionKey(`${key.toString('base64url')}\n`)).toEqual(key);
    expect(() => parseEncryptionKey(randomBytes(16).toString('base64'))).toThrow(/32 random bytes.*got 16 bytes/);
    expect(() => parseEncryptionKey('not base64!')).toThrow(/32 random bytes/);
  });
});
