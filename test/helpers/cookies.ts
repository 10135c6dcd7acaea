import { parse } from 'cookie';

/**
 * A browser's cookie jar for tests that speak HTTP themselves: Set-Cookie lines in, a Cookie
 * header out. The `cookie` package (jshttp, what express reads cookies with) does the splitting;
 * this only keeps the pairs and applies deletions.
 */

/** Values stay as the server sent them: the jar sends them back unchanged (RFC 6265 §5.4). */
const AS_SENT = { decode: (value: string) => value };

/** One Set-Cookie line: the cookie's name and value, and whether the line deletes it. */
export interface SetCookie {
  name: string;
  value: string;
  /** An empty value, `Max-Age` of 0 or less, or an `Expires` not after `now` (RFC 6265 §5.3 steps 3 and 11). */
  deletes: boolean;
}

/**
 * Parses one Set-Cookie line (RFC 6265 §5.2): the name-value pair ends at the first `;` and
 * splits at its first `=` only, so a value may hold `=` (base64 padding, as Envoy's OauthHMAC);
 * attribute names are case-insensitive, and a valid Max-Age wins over Expires. Undefined for a
 * line without `=`, which a browser ignores.
 */
export function parseSetCookie(line: string, now = new Date()): SetCookie | undefined {
  const end = line.indexOf(';');
  const pair = end === -1 ? line : line.slice(0, end);
  const [entry] = Object.entries(parse(pair, AS_SENT));
  if (!entry) return undefined;
  const [name, value] = entry;
  const attributes = new Map(Object.entries(end === -1 ? {} : parse(line.slice(end + 1), AS_SENT)).map(([key, v]) => [key.toLowerCase(), v]));
  const maxAge = attributes.get('max-age');
  const expires = attributes.get('expires');
  const deletes = value === '' || (maxAge !== undefined && /^-?\d+$/.test(maxAge) ? Number(maxAge) <= 0 : expires !== undefined && Date.parse(expires) <= now.getTime());
  return { name, value, deletes };
}

/** The cookies of `previous` (a Cookie header) with `setCookie`'s lines applied, as a Cookie header again. */
export function cookieJar(previous: string, setCookie: string[] | string | undefined, now = new Date()): string {
  const jar = new Map(Object.entries(parse(previous, AS_SENT)));
  for (const line of [setCookie ?? []].flat()) {
    const cookie = parseSetCookie(line, now);
    if (!cookie) continue;
    if (cookie.deletes) jar.delete(cookie.name);
    else jar.set(cookie.name, cookie.value);
  }
  return [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
}
