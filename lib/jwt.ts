import { errors as joseErrors, compactVerify, importJWK, jwtVerify, decodeProtectedHeader, type JWK, type JWTPayload, type JWTHeaderParameters, type CryptoKey, type KeyObject } from 'jose';

/**
 * The verification core shared by the factory and the services. Pure: keys, token, options
 * and a clock in; claims or a TokenError out. Never knows HTTP.
 */

/** Tokens travel in headers; 8 KiB is a common header limit, so larger tokens are refused before parsing. */
export const MAX_TOKEN_BYTES = 8192;

/** Envoy's jwt_authn default clock skew (seconds). */
export const DEFAULT_CLOCK_TOLERANCE = 60;

/** Integer epoch seconds, as JWT times are (Envoy requires positive integers). */
export const epochSeconds = (date: Date): number => Math.floor(date.getTime() / 1000);

/** A verification key pinned to exactly one algorithm. */
export interface VerificationKey {
  kid: string;
  alg: string;
  key: CryptoKey | KeyObject | Uint8Array;
}

export interface VerifyOptions {
  /** Required `iss`; omitted means any issuer is accepted. */
  issuer?: string | string[];
  /** Accepted audiences: the token's `aud` (string or array) must intersect them. */
  audience?: string | string[];
  /** Required `sub`. */
  subject?: string;
  /** Seconds of clock skew allowed on exp / nbf (default 60, as Envoy). */
  clockTolerance?: number;
  /** The clock: verification happens "at" this instant. */
  now: Date;
  /** Size cap in bytes (default 8 KiB). */
  maxBytes?: number;
}

export type TokenErrorName = 'TokenExpiredError' | 'JsonWebTokenError' | 'NotBeforeError';

/**
 * A refused token, named as jsonwebtoken users know it (the original sample's users parse
 * `error.name`): TokenExpiredError carries `expiredAt`, NotBeforeError carries `date`.
 * `code` is a stable machine-readable reason.
 */
export class TokenError extends Error {
  override readonly name: TokenErrorName;
  readonly code: string;
  readonly expiredAt?: Date;
  readonly date?: Date;

  constructor(name: TokenErrorName, code: string, message: string, extra: { expiredAt?: Date; date?: Date } = {}) {
    super(message);
    this.name = name;
    this.code = code;
    if (extra.expiredAt) this.expiredAt = extra.expiredAt;
    if (extra.date) this.date = extra.date;
  }

  /** The public JSON shape: `{ name, message, code, expiredAt?, date? }`. */
  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      message: this.message,
      code: this.code,
      ...(this.expiredAt ? { expiredAt: this.expiredAt.toISOString() } : {}),
      ...(this.date ? { date: this.date.toISOString() } : {}),
    };
  }
}

const malformed = (message = 'jwt malformed') => new TokenError('JsonWebTokenError', 'malformed', message);

/** base64url without padding, RFC 7515 §2: jose itself tolerates padding and stray characters. */
const B64URL = /^[A-Za-z0-9_-]+$/;

/**
 * Checks the compact serialization strictly before any parsing (RFC 7515 §7.1): size cap,
 * exactly three segments, strict base64url, a canonical length for each segment.
 */
export function assertCompactForm(token: unknown, maxBytes = MAX_TOKEN_BYTES): asserts token is string {
  if (typeof token !== 'string' || token.length === 0) throw malformed('jwt must be provided');
  if (overBytes(token, maxBytes)) {
    throw new TokenError('JsonWebTokenError', 'too_large', `jwt is larger than ${maxBytes} bytes`);
  }
  const parts = token.split('.');
  if (parts.length !== 3) throw malformed();
  for (const [index, part] of parts.entries()) {
    // RFC 7515 allows an empty payload (a JWS over zero bytes); header and signature never are.
    if (index === 1 && part === '') continue;
    // A base64url string of length 4n+1 cannot come from any byte sequence.
    if (!B64URL.test(part) || part.length % 4 === 1) throw malformed();
    // Canonical form only: non-zero unused trailing bits give a second spelling of the same bytes,
    // and the signature covers the spelling (Wycheproof "MacOfIncorrectlyEncodedMessage").
    if (!canonicalBase64url(part)) throw malformed();
  }
}

/**
 * Whether `text` is longer than `limit` bytes in UTF-8, encoded only when its length alone cannot
 * tell: a UTF-16 code unit is 1 to 3 bytes (a surrogate pair 4 for its two units), so up to
 * limit / 3 units always fit and over `limit` units never do; an ordinary token is never copied.
 * TextEncoder, not Buffer: the browser console verifies with this same code.
 */
function overBytes(text: string, limit: number): boolean {
  if (text.length * 3 <= limit) return false;
  if (text.length > limit) return true;
  return new TextEncoder().encode(text).length > limit;
}

const B64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * Whether a string of base64url characters is the one canonical spelling of its bytes: RFC 4648
 * §3.5, the pad bits of the last character are zero (4 of them after 2 characters of a group, 2
 * after 3). Read from the last character alone, without Buffer (the browser console runs this
 * code too): decoding and re-encoding every segment with jose's base64url cost 15 µs of CPU per
 * token on Node 24, against 3 µs with Buffer and well under 1 µs for this check.
 */
export function canonicalBase64url(part: string): boolean {
  const rest = part.length % 4;
  if (rest === 0) return true;
  if (rest === 1) return false;
  const value = B64URL_ALPHABET.indexOf(part[part.length - 1]!);
  return value >= 0 && (value & (rest === 2 ? 0b1111 : 0b11)) === 0;
}

/**
 * Header segments already read and accepted, by their exact spelling: every token of one key
 * version carries the same header, so a few entries serve a whole mesh. Bounded: when full, the
 * oldest goes. A refused header is never kept (it is read, and refused, each time).
 */
const acceptedHeaders = new Map<string, Readonly<JWTHeaderParameters>>();
const MAX_ACCEPTED_HEADERS = 256;

/** Reads the protected header after the strict form check, and refuses what we never accept. */
export function readHeader(token: string): JWTHeaderParameters {
  const segment = token.slice(0, Math.max(0, token.indexOf('.')));
  const known = acceptedHeaders.get(segment);
  if (known) return known;
  const header = parseHeader(token);
  if (segment !== '') {
    if (acceptedHeaders.size >= MAX_ACCEPTED_HEADERS) acceptedHeaders.delete(acceptedHeaders.keys().next().value!);
    acceptedHeaders.set(segment, Object.freeze(header));
  }
  return header;
}

function parseHeader(token: string): JWTHeaderParameters {
  let header: JWTHeaderParameters;
  try {
    header = decodeProtectedHeader(token) as JWTHeaderParameters;
  } catch {
    throw malformed('jwt header is not valid JSON');
  }
  if (typeof header.alg !== 'string') throw malformed('jwt header has no alg');
  if (header.alg === 'none') throw new TokenError('JsonWebTokenError', 'alg_none', 'jwt signature is required');
  // RFC 7797: an unencoded payload is never a JWT.
  if ('b64' in header) throw new TokenError('JsonWebTokenError', 'b64_unsupported', 'jwt with a b64 header is not accepted');
  // RFC 7515 §4.1.11: we understand no extension, so any crit makes the token invalid.
  if ('crit' in header) throw new TokenError('JsonWebTokenError', 'crit_unsupported', 'jwt has critical header parameters we do not understand');
  // jku, x5u, jwk and x5c are ignored on purpose: keys come only from our own store.
  return header;
}

/** Picks the candidate keys: by `kid` when the header names one, else every key of that alg. */
function selectKeys(header: JWTHeaderParameters, keys: readonly VerificationKey[]): VerificationKey[] {
  const byKid = typeof header.kid === 'string' ? keys.filter((k) => k.kid === header.kid) : keys;
  if (byKid.length === 0) throw new TokenError('JsonWebTokenError', 'unknown_kid', 'no key matches the jwt kid');
  const byAlg = byKid.filter((k) => k.alg === header.alg);
  if (byAlg.length === 0) throw new TokenError('JsonWebTokenError', 'invalid_algorithm', 'invalid algorithm');
  return byAlg;
}

const list = (v: string | string[] | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** The nbf / exp verdict on a payload at `options.now` (with tolerance), as jsonwebtoken orders it. */
function checkTimes(p: JWTPayload, options: VerifyOptions): TokenError | undefined {
  const now = epochSeconds(options.now);
  const tolerance = options.clockTolerance ?? DEFAULT_CLOCK_TOLERANCE;
  if (typeof p.nbf === 'number' && p.nbf > now + tolerance) {
    return new TokenError('NotBeforeError', 'not_before', 'jwt not active', { date: new Date(p.nbf * 1000) });
  }
  if (typeof p.exp === 'number' && p.exp <= now - tolerance) {
    return new TokenError('TokenExpiredError', 'expired', 'jwt expired', { expiredAt: new Date(p.exp * 1000) });
  }
  return undefined;
}

/** Maps jose's errors onto jsonwebtoken's names and messages. */
function translate(err: unknown, options: VerifyOptions, payload?: JWTPayload): TokenError {
  if (err instanceof TokenError) return err;
  if (err instanceof joseErrors.JWTExpired) {
    const exp = typeof err.payload.exp === 'number' ? err.payload.exp : undefined;
    if (err.claim === 'exp' && exp !== undefined) {
      return new TokenError('TokenExpiredError', 'expired', 'jwt expired', { expiredAt: new Date(exp * 1000) });
    }
    return new TokenError('JsonWebTokenError', 'iat_invalid', err.message);
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    const p = err.payload ?? payload ?? {};
    // jose checks iss/sub/aud before the times; jsonwebtoken (whose answers users parse) reports
    // nbf, then exp first, so an expired token with a wrong audience still answers TokenExpiredError.
    const timeError = ['aud', 'iss', 'sub'].includes(err.claim) ? checkTimes(p, options) : undefined;
    if (timeError) return timeError;
    switch (err.claim) {
      case 'nbf':
        if (err.reason === 'check_failed' && typeof p.nbf === 'number') {
          return new TokenError('NotBeforeError', 'not_before', 'jwt not active', { date: new Date(p.nbf * 1000) });
        }
        return new TokenError('JsonWebTokenError', 'nbf_invalid', 'jwt nbf must be a number');
      case 'aud':
        return new TokenError('JsonWebTokenError', 'audience_invalid', `jwt audience invalid. expected: ${list(options.audience).join(' or ')}`);
      case 'iss':
        return new TokenError('JsonWebTokenError', 'issuer_invalid', `jwt issuer invalid. expected: ${list(options.issuer).join(',')}`);
      case 'sub':
        return new TokenError('JsonWebTokenError', 'subject_invalid', `jwt subject invalid. expected: ${options.subject}`);
      case 'exp':
        return new TokenError('JsonWebTokenError', err.reason === 'missing' ? 'exp_missing' : 'exp_invalid', err.reason === 'missing' ? 'jwt has no exp claim' : 'jwt exp must be a number');
      default:
        return new TokenError('JsonWebTokenError', 'claim_invalid', err.message);
    }
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new TokenError('JsonWebTokenError', 'invalid_signature', 'invalid signature');
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) {
    return new TokenError('JsonWebTokenError', 'invalid_algorithm', 'invalid algorithm');
  }
  if (err instanceof joseErrors.JWTInvalid || err instanceof joseErrors.JWSInvalid) {
    return malformed(err.message.startsWith('JWT Claims Set') ? 'jwt payload is not a JSON object' : 'jwt malformed');
  }
  if (err instanceof joseErrors.JOSENotSupported) {
    return new TokenError('JsonWebTokenError', 'unsupported', 'jwt uses an unsupported feature');
  }
  return malformed();
}

/** The strict steps every verification shares: size cap, compact form, header policy, pinned candidate keys. */
function prepare(token: unknown, keys: readonly VerificationKey[], maxBytes?: number): { token: string; candidates: VerificationKey[] } {
  assertCompactForm(token, maxBytes);
  const header = readHeader(token);
  return { token, candidates: selectKeys(header, keys) };
}

/**
 * Verifies a compact JWS (any payload, not only a JWT claims set) with the same strict checks
 * as verifyJwt: used where the payload is not ours to interpret (the Wycheproof vectors).
 */
export async function verifyJws(
  token: unknown,
  keys: readonly VerificationKey[],
  options: { maxBytes?: number } = {},
): Promise<{ payload: Uint8Array; header: JWTHeaderParameters; kid: string }> {
  const prepared = prepare(token, keys, options.maxBytes);
  let lastError: unknown;
  for (const candidate of prepared.candidates) {
    try {
      const result = await compactVerify(prepared.token, candidate.key, { algorithms: [candidate.alg] });
      return { payload: result.payload, header: result.protectedHeader as JWTHeaderParameters, kid: candidate.kid };
    } catch (err) {
      lastError = err;
      if (!(err instanceof joseErrors.JWSSignatureVerificationFailed)) break;
    }
  }
  throw translate(lastError, { now: new Date(0) });
}

/**
 * Turns a public JWK (or an oct JWK) into a VerificationKey pinned to its declared `alg`.
 * Refuses a key without `alg`, with `use` other than "sig", or whose `key_ops` lack "verify"
 * (RFC 7517 §4.2-4.4): such a key was not meant to verify signatures.
 */
export async function verificationKeyFromJwk(jwk: JWK): Promise<VerificationKey> {
  if (typeof jwk.alg !== 'string' || jwk.alg === '' || jwk.alg === 'none') {
    throw new TokenError('JsonWebTokenError', 'key_unusable', 'the key declares no signing alg');
  }
  if (jwk.use !== undefined && jwk.use !== 'sig') throw new TokenError('JsonWebTokenError', 'key_unusable', 'the key is not for signatures');
  if (jwk.key_ops !== undefined && !jwk.key_ops.includes('verify')) throw new TokenError('JsonWebTokenError', 'key_unusable', 'the key may not verify');
  // Public members only for asymmetric keys: a JWK with a private part must not turn into a signing key here.
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, oth: _oth, ...publicJwk } = jwk as JWK & { oth?: unknown };
  const material = jwk.kty === 'oct' ? jwk : publicJwk;
  try {
    const key = await importJWK({ ...material, ext: true }, jwk.alg);
    return { kid: typeof jwk.kid === 'string' ? jwk.kid : '', alg: jwk.alg, key };
  } catch {
    throw new TokenError('JsonWebTokenError', 'key_unusable', `the key does not fit ${jwk.alg}`);
  }
}

/**
 * Verifies a compact JWT against pinned keys: strict form, size cap, algorithm per key,
 * `exp` required, issuer / audience / subject when given, clock tolerance (default 60 s).
 * Resolves with the payload, header and the kid that verified it; rejects with a TokenError.
 */
export async function verifyJwt(
  token: unknown,
  keys: readonly VerificationKey[],
  options: VerifyOptions,
): Promise<{ payload: JWTPayload; header: JWTHeaderParameters; kid: string }> {
  const { candidates } = prepare(token, keys, options.maxBytes);
  let lastError: unknown;
  for (const candidate of candidates) {
    try {
      const result = await jwtVerify(token as string, candidate.key, {
        algorithms: [candidate.alg],
        issuer: options.issuer,
        audience: options.audience,
        subject: options.subject,
        clockTolerance: options.clockTolerance ?? DEFAULT_CLOCK_TOLERANCE,
        currentDate: options.now,
        requiredClaims: ['exp'],
      });
      return { payload: result.payload, header: result.protectedHeader, kid: candidate.kid };
    } catch (err) {
      lastError = err;
      // Only a signature mismatch is worth trying the next key of the same kid/alg.
      if (!(err instanceof joseErrors.JWSSignatureVerificationFailed)) break;
    }
  }
  throw translate(lastError, options);
}

/**
 * The verification keys of a JWKS document: each usable key pinned to its alg; a key that cannot
 * verify (no alg, not for signatures, a type that does not fit) is skipped, as Envoy skips it.
 * Throws when the document has no `keys` list.
 */
export async function verificationKeysFromJwks(doc: unknown): Promise<VerificationKey[]> {
  const list = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list)) throw new Error('not a JWKS: it has no "keys" list');
  const keys: VerificationKey[] = [];
  for (const jwk of list) {
    try {
      keys.push(await verificationKeyFromJwk(jwk as JWK));
    } catch {
      /* not a candidate */
    }
  }
  return keys;
}
