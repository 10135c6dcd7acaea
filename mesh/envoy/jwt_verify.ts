import { compactVerify, importJWK, type CryptoKey, type JWK, type KeyObject } from 'jose';

/**
 * google/jwt_verify_lib as Envoy's jwt_authn uses it: parsing a token (src/jwt.cc), its time
 * window, audiences (Envoy's source/common/jwt/check_audience.cc), loading a JWKS
 * (src/jwks.cc) and checking the signature with the key chosen by kid and alg (src/verify.cc),
 * with the library's own status strings (src/status.cc). The signature itself is checked by
 * jose with the algorithm pinned; each key is imported once per loaded JWKS.
 */

/** jwt_verify_lib Status values this engine can produce, with their exact strings (src/status.cc). */
export const STATUS = {
  Ok: 'OK',
  JwtMissed: 'Jwt is missing',
  JwtNotYetValid: 'Jwt not yet valid',
  JwtExpired: 'Jwt is expired',
  JwtBadFormat: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
  JwtHeaderParseErrorBadBase64: 'Jwt header is an invalid Base64url encoded',
  JwtHeaderParseErrorBadJson: 'Jwt header is an invalid JSON',
  JwtHeaderBadAlg: 'Jwt header [alg] field is required and must be a string',
  JwtHeaderNotImplementedAlg: 'Jwt header [alg] is not supported',
  JwtHeaderBadKid: 'Jwt header [kid] field is not a string',
  JwtPayloadParseErrorBadBase64: 'Jwt payload is an invalid Base64url encoded',
  JwtPayloadParseErrorBadJson: 'Jwt payload is an invalid JSON',
  JwtPayloadParseErrorIssNotString: 'Jwt payload [iss] field is not a string',
  JwtPayloadParseErrorSubNotString: 'Jwt payload [sub] field is not a string',
  JwtPayloadParseErrorIatNotInteger: 'Jwt payload [iat] field is not an integer',
  JwtPayloadParseErrorIatOutOfRange: 'Jwt payload [iat] field is not a positive 64 bit integer',
  JwtPayloadParseErrorNbfNotInteger: 'Jwt payload [nbf] field is not an integer',
  JwtPayloadParseErrorNbfOutOfRange: 'Jwt payload [nbf] field is not a positive 64 bit integer',
  JwtPayloadParseErrorExpNotInteger: 'Jwt payload [exp] field is not an integer',
  JwtPayloadParseErrorExpOutOfRange: 'Jwt payload [exp] field is not a positive 64 bit integer',
  JwtPayloadParseErrorJtiNotString: 'Jwt payload [jti] field is not a string',
  JwtPayloadParseErrorAudNotString: 'Jwt payload [aud] field is not a string or string list',
  JwtSignatureParseErrorBadBase64: 'Jwt signature is an invalid Base64url encoded',
  JwtEd25519SignatureWrongLength: 'Jwt ED25519 signature is wrong length',
  JwtUnknownIssuer: 'Jwt issuer is not configured',
  JwtAudienceNotAllowed: 'Audiences in Jwt are not allowed',
  JwtVerificationFail: 'Jwt verification fails',
  JwksNoValidKeys: "Jwks doesn't have any valid public key",
  JwksKidAlgMismatch: "Jwks doesn't have key to match kid or alg from Jwt",
} as const;

export type Status = keyof typeof STATUS;

/** Envoy's default clock skew, `kClockSkewInSecond` (RequestAuthentication has no setting for it). */
export const CLOCK_SKEW_SECONDS = 60;

/** A parsed token, as jwt_verify_lib's Jwt class holds it. */
export interface ParsedJwt {
  alg: string;
  kid: string;
  iss: string;
  sub: string;
  nbf: number;
  exp: number;
  audiences: string[];
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  headerB64: string;
  payloadB64: string;
  signatureB64: string;
}

const IMPLEMENTED_ALGS = new Set(['ES256', 'ES384', 'ES512', 'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA']);

/** absl::WebSafeBase64Unescape: url-safe alphabet, optional "=" padding, no stray characters. */
function webSafeBase64Unescape(s: string): Buffer | undefined {
  const m = /^([A-Za-z0-9_-]*)(={0,2})$/.exec(s);
  if (!m) return undefined;
  const body = m[1]!;
  if (body.length % 4 === 1) return undefined;
  if (m[2]!.length > 0 && (body.length + m[2]!.length) % 4 !== 0) return undefined;
  return Buffer.from(body, 'base64url');
}

/** protobuf JsonStringToMessage into a Struct: only a JSON object is accepted. */
function parseStruct(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** StructUtils::GetUInt64: a JSON number, 0 <= n < 2^64, truncated towards zero. */
function readUInt64(payload: Record<string, unknown>, name: string): 'missing' | 'wrong_type' | 'out_of_range' | number {
  if (!(name in payload)) return 'missing';
  const v = payload[name];
  if (typeof v !== 'number') return 'wrong_type';
  if (v < 0 || v >= 2 ** 64) return 'out_of_range';
  return Math.trunc(v);
}

/** Jwt::parseFromString (jwt_verify_lib src/jwt.cc): same checks, same order, same statuses. */
export function parseJwt(token: string): { ok: true; jwt: ParsedJwt } | { ok: false; status: Status } {
  const fail = (status: Status) => ({ ok: false as const, status });
  if ((token.match(/\./g) ?? []).length !== 2) return fail('JwtBadFormat');
  const parts = token.split('.').filter((p) => p.length > 0); // absl::SkipEmpty
  if (parts.length !== 3) return fail('JwtBadFormat');
  const [headerB64, payloadB64, signatureB64] = parts as [string, string, string];
  const headerBytes = webSafeBase64Unescape(headerB64);
  if (!headerBytes) return fail('JwtHeaderParseErrorBadBase64');
  const header = parseStruct(headerBytes);
  if (!header) return fail('JwtHeaderParseErrorBadJson');
  if (typeof header.alg !== 'string') return fail('JwtHeaderBadAlg');
  if (!IMPLEMENTED_ALGS.has(header.alg)) return fail('JwtHeaderNotImplementedAlg');
  if ('kid' in header && typeof header.kid !== 'string') return fail('JwtHeaderBadKid');
  const payloadBytes = webSafeBase64Unescape(payloadB64);
  if (!payloadBytes) return fail('JwtPayloadParseErrorBadBase64');
  const payload = parseStruct(payloadBytes);
  if (!payload) return fail('JwtPayloadParseErrorBadJson');
  if ('iss' in payload && typeof payload.iss !== 'string') return fail('JwtPayloadParseErrorIssNotString');
  if ('sub' in payload && typeof payload.sub !== 'string') return fail('JwtPayloadParseErrorSubNotString');
  const times: Record<'iat' | 'nbf' | 'exp', number> = { iat: 0, nbf: 0, exp: 0 };
  for (const name of ['iat', 'nbf', 'exp'] as const) {
    const v = readUInt64(payload, name);
    const cap = (name[0]!.toUpperCase() + name.slice(1)) as 'Iat' | 'Nbf' | 'Exp';
    if (v === 'wrong_type') return fail(`JwtPayloadParseError${cap}NotInteger`);
    if (v === 'out_of_range') return fail(`JwtPayloadParseError${cap}OutOfRange`);
    if (typeof v === 'number') times[name] = v;
  }
  if ('jti' in payload && typeof payload.jti !== 'string') return fail('JwtPayloadParseErrorJtiNotString');
  let audiences: string[] = [];
  if ('aud' in payload) {
    const aud = payload.aud;
    if (typeof aud === 'string') audiences = [aud];
    else if (Array.isArray(aud) && aud.every((a) => typeof a === 'string')) audiences = aud as string[];
    else return fail('JwtPayloadParseErrorAudNotString');
  }
  if (!webSafeBase64Unescape(signatureB64)) return fail('JwtSignatureParseErrorBadBase64');
  return {
    ok: true,
    jwt: {
      alg: header.alg,
      kid: typeof header.kid === 'string' ? header.kid : '',
      iss: typeof payload.iss === 'string' ? payload.iss : '',
      sub: typeof payload.sub === 'string' ? payload.sub : '',
      nbf: times.nbf,
      exp: times.exp,
      audiences,
      header,
      payload,
      headerB64,
      payloadB64,
      signatureB64,
    },
  };
}

/** Jwt::verifyTimeConstraint: nbf and exp with the clock skew; exp 0 (or absent) means no expiry. */
export function checkTime(jwt: Pick<ParsedJwt, 'nbf' | 'exp'>, nowSeconds: number, skew = CLOCK_SKEW_SECONDS): Status {
  if (nowSeconds + skew < jwt.nbf) return 'JwtNotYetValid';
  if (jwt.exp && nowSeconds > jwt.exp + skew) return 'JwtExpired';
  return 'Ok';
}

/** CheckAudience's normalisation: drop an http:// or https:// prefix and one trailing slash. */
export function sanitizeAudience(aud: string): string {
  if (aud === '') return aud;
  let out = aud;
  if (out.startsWith('http://')) out = out.slice(7);
  else if (out.startsWith('https://')) out = out.slice(8);
  if (aud.endsWith('/')) out = out.slice(0, -1);
  return out;
}

/** CheckAudience::areAudiencesAllowed: no configured audience means no check at all. */
export function areAudiencesAllowed(configured: readonly string[], tokenAudiences: readonly string[]): boolean {
  if (configured.length === 0) return true;
  const allowed = new Set(configured.map(sanitizeAudience));
  return tokenAudiences.some((a) => allowed.has(sanitizeAudience(a)));
}

/** A JWKS as Envoy loaded it: its keys, or why it has none usable. */
export interface LoadedJwks {
  keys: JWK[];
  /** Set when Envoy rejects the whole JWKS (a bad key makes `Jwks::getStatus()` fail). */
  invalid?: string;
  /** Keys imported so far, by index and alg: each is imported once per loaded JWKS. */
  imported: Map<string, Promise<CryptoKey | KeyObject | Uint8Array | undefined>>;
}

/** Jwks::createFromJwksCore + extractJwk (src/jwks.cc): the first bad key makes the whole set invalid. */
export function loadJwks(input: unknown): LoadedJwks {
  let doc: unknown = input;
  if (typeof input === 'string') {
    try {
      doc = JSON.parse(input);
    } catch {
      return { keys: [], imported: new Map(), invalid: 'Jwks is an invalid JSON' };
    }
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return { keys: [], imported: new Map(), invalid: 'Jwks is an invalid JSON' };
  const keysField = (doc as Record<string, unknown>).keys;
  if (keysField === undefined) return { keys: [], imported: new Map(), invalid: 'Jwks does not have [keys] field' };
  if (!Array.isArray(keysField)) return { keys: [], imported: new Map(), invalid: '[keys] in Jwks is not an array' };
  const keys: JWK[] = [];
  for (const raw of keysField) {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) continue;
    const problem = jwkProblem(raw as Record<string, unknown>);
    if (problem) return { keys: [], imported: new Map(), invalid: problem };
    keys.push(raw as JWK);
  }
  if (keys.length === 0) return { keys: [], imported: new Map(), invalid: "Jwks doesn't have any valid public key" };
  return { keys, imported: new Map() };
}

/** extractJwk's per-kty checks; undefined when the key is acceptable. */
function jwkProblem(k: Record<string, unknown>): string | undefined {
  if (!('kty' in k)) return '[kty] is missing in [keys]';
  if (typeof k.kty !== 'string') return '[kty] is bad in [keys]';
  const alg = typeof k.alg === 'string' ? k.alg : undefined;
  const str = (f: string) => typeof k[f] === 'string';
  switch (k.kty) {
    case 'RSA':
      if (alg !== undefined && !(alg.startsWith('RS') || alg.startsWith('PS'))) return '[alg] is not started with [RS] or [PS] for an RSA key';
      if (!('n' in k)) return '[n] field is missing for a RSA key';
      if (!str('n')) return '[n] field is not string for a RSA key';
      if (!('e' in k)) return '[e] field is missing for a RSA key';
      if (!str('e')) return '[e] field is not string for a RSA key';
      return undefined;
    case 'EC': {
      if (alg !== undefined && !alg.startsWith('ES')) return '[alg] is not started with [ES] for an EC key';
      if ('crv' in k && !str('crv')) return '[crv] field is not string for an EC key';
      const crv = k.crv as string | undefined;
      const pairs: Record<string, string> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };
      if (alg !== undefined && crv && pairs[alg] !== crv) return '[crv] field specified is not compatible with [alg] for an EC key';
      if (!(alg && pairs[alg]) && crv && !Object.values(pairs).includes(crv)) return '[crv] or [alg] field is not supported for an EC key';
      if (!('x' in k)) return '[x] field is missing for an EC key';
      if (!str('x')) return '[x] field is not string for an EC key';
      if (!('y' in k)) return '[y] field is missing for an EC key';
      if (!str('y')) return '[y] field is not string for an EC key';
      return undefined;
    }
    case 'oct':
      if (alg !== undefined && !['HS256', 'HS384', 'HS512'].includes(alg)) return '[alg] does not start with [HS] for an HMAC key';
      if (!('k' in k)) return '[k] field is missing for an HMAC key';
      if (!str('k')) return '[k] field is not string for an HMAC key';
      return undefined;
    case 'OKP':
      if (alg !== undefined && alg !== 'EdDSA') return '[alg] is not [EdDSA] for an OKP key';
      if (!('crv' in k)) return '[crv] field is missing for an OKP key';
      if (k.crv !== 'Ed25519') return '[crv] field is not supported for an OKP key';
      if (!str('x')) return '[x] field is missing for an OKP key';
      return undefined;
    default:
      return '[kty] is not supported in [keys]';
  }
}

/** Which key families can check which algs (verify.cc picks the routine by the JWK's kty). */
function ktyFits(kty: unknown, alg: string): boolean {
  if (kty === 'EC') return alg.startsWith('ES');
  if (kty === 'RSA') return alg.startsWith('RS') || alg.startsWith('PS');
  if (kty === 'oct') return alg.startsWith('HS');
  if (kty === 'OKP') return alg === 'EdDSA';
  return false;
}

/** The JWK at `index` imported for `alg`, once per loaded JWKS; undefined when it cannot be (next key). */
function importOnce(jwks: LoadedJwks, index: number, alg: string): Promise<CryptoKey | KeyObject | Uint8Array | undefined> {
  const cacheKey = `${index}|${alg}`;
  let key = jwks.imported.get(cacheKey);
  if (!key) {
    const { alg: _alg, use: _use, key_ops: _ops, ext: _ext, ...material } = jwks.keys[index]!;
    key = importJWK(material, alg).catch(() => undefined);
    jwks.imported.set(cacheKey, key);
  }
  return key;
}

/**
 * verifyJwtWithoutTimeChecking (src/verify.cc): a JWK is a candidate unless both it and the token
 * name a kid and they differ, or it names an alg other than the token's. No candidate at all is
 * "Jwks doesn't have key to match kid or alg from Jwt"; candidates that all fail are
 * "Jwt verification fails". The signature itself is checked by jose with the key pinned.
 */
export async function verifySignature(jwt: ParsedJwt, jwks: LoadedJwks): Promise<{ status: Status; kid?: string; tried: number }> {
  let matched = false;
  let tried = 0;
  const compact = `${jwt.headerB64}.${jwt.payloadB64}.${jwt.signatureB64}`;
  for (const [index, jwk] of jwks.keys.entries()) {
    const kid = typeof jwk.kid === 'string' ? jwk.kid : '';
    if (jwt.kid && kid && kid !== jwt.kid) continue;
    if (jwk.alg && jwk.alg !== jwt.alg) continue;
    matched = true;
    if (!ktyFits(jwk.kty, jwt.alg)) continue;
    tried += 1;
    const key = await importOnce(jwks, index, jwt.alg);
    if (!key) continue;
    try {
      await compactVerify(compact, key, { algorithms: [jwt.alg] });
      return { status: 'Ok', kid: kid || undefined, tried };
    } catch {
      // A signature that does not match this key: next key.
    }
  }
  return { status: matched ? 'JwtVerificationFail' : 'JwksKidAlgMismatch', tried };
}

