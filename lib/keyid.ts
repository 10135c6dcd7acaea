import { badRequest } from './errors.js';

/** A keyId names a file on disk, so only a safe alphabet is allowed; no path tricks. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** Returns the keyId when it is safe, or throws a 400 AppError with code `invalid_key_id`. */
export function assertKeyId(keyId: unknown): string {
  if (typeof keyId !== 'string' || !KEY_ID_PATTERN.test(keyId) || keyId === '.' || keyId === '..') {
    throw badRequest(
      'keyId must match ^[A-Za-z0-9._-]{1,64}$ and may not be "." or ".."',
      'invalid_key_id',
    );
  }
  return keyId;
}
