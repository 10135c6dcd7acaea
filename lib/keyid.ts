import { badRequest } from './errors.js';

/**
 * A keyId names a file on disk, so only a safe alphabet is allowed; no path tricks. It may not
 * start with a dot: the key store's own temp and lock files do, and its loader skips them, so a
 * key named so would be created and then lost at the next start.
 */
export const KEY_ID_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;

/** Returns the keyId when it is safe, or throws a 400 AppError with code `invalid_key_id`. */
export function assertKeyId(keyId: unknown): string {
  if (typeof keyId !== 'string' || !KEY_ID_PATTERN.test(keyId)) {
    throw badRequest(
      'keyId must be 1 to 64 of A-Z a-z 0-9 . _ - and may not start with "."',
      'invalid_key_id',
    );
  }
  return keyId;
}
