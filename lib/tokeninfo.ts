import { decodeJwt, decodeProtectedHeader, type JWTHeaderParameters, type JWTPayload } from 'jose';

/**
 * What a person wants to see of a token without verifying it: header, claims, and its times as
 * dates and as "expires in 12 min" / "expired 3 h ago". Pure and free of node APIs: the `jwt`
 * command and the browser console both use it.
 */

/** A decoded, unverified token. */
export interface DecodedToken {
  header: JWTHeaderParameters;
  payload: JWTPayload;
  /** iat / nbf / exp as ISO dates with their distance from `now`. */
  times: Array<{ claim: 'iat' | 'nbf' | 'exp'; date: string; relative: string }>;
  /** One sentence on the token's lifetime at `now`: valid, expired, not yet valid, no exp. */
  status: string;
  bytes: number;
}

/** Decoding failed: the token is not a compact JWS with JSON header and claims. */
export class MalformedTokenError extends Error {
  override readonly name = 'MalformedTokenError';
  readonly code = 'malformed';
}

const UNITS: Array<[number, string]> = [
  [86_400, 'd'],
  [3600, 'h'],
  [60, 'min'],
  [1, 's'],
];

/** `seconds` as the largest whole unit: 59 s, 12 min, 3 h, 2 d. */
export function humanDuration(seconds: number): string {
  const abs = Math.abs(Math.trunc(seconds));
  for (const [size, unit] of UNITS) if (abs >= size) return `${Math.floor(abs / size)} ${unit}`;
  return '0 s';
}

/** "in 12 min" or "3 h ago": the distance from `now` to `at` (both in epoch seconds). */
export function relativeTo(at: number, now: number): string {
  return at >= now ? `in ${humanDuration(at - now)}` : `${humanDuration(now - at)} ago`;
}

/** Decodes a compact token for display (no verification); throws MalformedTokenError. */
export function decodeToken(token: string, now: Date): DecodedToken {
  const compact = token.trim();
  if (compact.split('.').length !== 3) throw new MalformedTokenError('jwt malformed: a JWT has three dot-separated parts (header.payload.signature)');
  let header: JWTHeaderParameters;
  let payload: JWTPayload;
  try {
    header = decodeProtectedHeader(compact) as JWTHeaderParameters;
  } catch {
    throw new MalformedTokenError('jwt malformed: the header is not base64url-encoded JSON');
  }
  try {
    payload = decodeJwt(compact);
  } catch {
    throw new MalformedTokenError('jwt malformed: the payload is not a base64url-encoded JSON object');
  }
  const nowS = Math.floor(now.getTime() / 1000);
  const times: DecodedToken['times'] = [];
  for (const claim of ['iat', 'nbf', 'exp'] as const) {
    const value = payload[claim];
    if (typeof value === 'number' && Number.isFinite(value)) times.push({ claim, date: new Date(value * 1000).toISOString(), relative: relativeTo(value, nowS) });
  }
  let status: string;
  if (typeof payload.nbf === 'number' && payload.nbf > nowS) status = `not valid yet: valid from ${relativeTo(payload.nbf, nowS)}`;
  else if (typeof payload.exp !== 'number') status = 'never expires: it has no exp (the factory and Envoy differ here: /verify requires exp, Envoy does not)';
  else if (payload.exp <= nowS) status = `expired ${relativeTo(payload.exp, nowS)}`;
  else status = `expires ${relativeTo(payload.exp, nowS)}`;
  return { header, payload, times, status, bytes: new TextEncoder().encode(compact).length };
}
