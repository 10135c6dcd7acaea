import { describe, expect, it } from 'vitest';
import { assertCompactForm, canonicalBase64url, readHeader } from '../../lib/jwt.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** The reference: a spelling is canonical when decoding and encoding it again gives it back. */
const roundTrips = (part: string) => Buffer.from(part, 'base64url').toString('base64url') === part;

describe('canonical base64url (RFC 4648 §3.5: the pad bits are zero)', () => {
  it('agrees with a decode / encode round trip for every last character after 0 to 3 characters of a group', () => {
    for (const prefix of ['', 'AAAA', 'eyJhbGciOiJSUzI1NiJ9'.slice(0, 16)]) {
      for (const extra of ['', 'Q', 'QU', 'QUF']) {
        for (const last of ALPHABET) {
          const part = `${prefix}${extra}${last}`;
          expect(canonicalBase64url(part), part).toBe(part.length % 4 !== 1 && roundTrips(part));
        }
      }
    }
  });

  it('refuses a token whose signature has a second spelling of the same bytes, as malformed', () => {
    // "AQ" and "AR" decode to the same byte 0x01; only "AQ" is canonical.
    expect(() => assertCompactForm('eyJhbGciOiJFUzI1NiJ9.e30.AQ')).not.toThrow();
    expect(() => assertCompactForm('eyJhbGciOiJFUzI1NiJ9.e30.AR')).toThrow(expect.objectContaining({ name: 'JsonWebTokenError', code: 'malformed' }));
  });

  it('reads a header again from memory, and refuses a refused header every time', () => {
    const segment = (header: object) => Buffer.from(JSON.stringify(header)).toString('base64url');
    const accepted = `${segment({ alg: 'ES256', kid: 'k1' })}.e30.AQ`;
    expect(readHeader(accepted)).toEqual({ alg: 'ES256', kid: 'k1' });
    expect(readHeader(accepted)).toEqual({ alg: 'ES256', kid: 'k1' });
    // The cache is keyed by the exact segment: another kid is another header.
    expect(readHeader(`${segment({ alg: 'ES256', kid: 'k2' })}.e30.AQ`)).toEqual({ alg: 'ES256', kid: 'k2' });
    const critical = `${segment({ alg: 'ES256', crit: ['exp'], exp: 1 })}.e30.AQ`;
    for (let i = 0; i < 2; i += 1) expect(() => readHeader(critical)).toThrow(expect.objectContaining({ code: 'crit_unsupported' }));
  });

  it('measures the size cap in UTF-8 bytes, not characters, on either side of the limit', () => {
    const tooLarge = expect.objectContaining({ code: 'too_large' });
    const malformedForm = expect.objectContaining({ code: 'malformed' });
    // 30 bytes fit a 30-byte cap, ASCII or three-byte characters; one character more does not.
    expect(() => assertCompactForm('a'.repeat(30), 30)).toThrow(malformedForm);
    expect(() => assertCompactForm('a'.repeat(31), 30)).toThrow(tooLarge);
    expect(() => assertCompactForm('€'.repeat(10), 30)).toThrow(malformedForm);
    expect(() => assertCompactForm('€'.repeat(11), 30)).toThrow(tooLarge);
    // 16 UTF-16 units, 32 bytes: over a 30-byte cap though shorter than it in characters.
    expect(() => assertCompactForm('😀'.repeat(8), 30)).toThrow(tooLarge);
    expect(() => assertCompactForm('😀'.repeat(7), 30)).toThrow(malformedForm);
  });
});
