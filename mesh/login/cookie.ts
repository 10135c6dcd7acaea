/**
 * The login's cookies (RFC 6265). The session cookie is opaque (a random id, 43 characters),
 * HttpOnly, SameSite=Strict, Secure and `__Host-` prefixed under https
 * (draft-ietf-httpbis-rfc6265bis §4.1.3.2: Secure, Path=/, no Domain).
 */

/** The cookie names in a Cookie header, with their values (the first one of a name wins, RFC 6265 §5.4). */
export function parseCookies(headers: string[] | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const header of headers ?? []) {
    for (const pair of header.split(';')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      if (!out.has(name)) out.set(name, pair.slice(eq + 1).trim());
    }
  }
  return out;
}

/** A Cookie header without the named cookies, or undefined when nothing is left. */
export function withoutCookies(headers: string[] | undefined, names: Set<string>): string | undefined {
  const kept: string[] = [];
  for (const header of headers ?? []) {
    for (const pair of header.split(';')) {
      const trimmed = pair.trim();
      const eq = trimmed.indexOf('=');
      const name = eq < 0 ? trimmed : trimmed.slice(0, eq);
      if (trimmed !== '' && !names.has(name)) kept.push(trimmed);
    }
  }
  return kept.length ? kept.join('; ') : undefined;
}

export interface CookieAttributes {
  secure: boolean;
  sameSite: 'Strict' | 'Lax';
  /** Seconds; 0 deletes the cookie. */
  maxAge: number;
}

/** One Set-Cookie value; our values are base64url, so they need no quoting. */
export function serializeCookie(name: string, value: string, attrs: CookieAttributes): string {
  return `${name}=${value}; Path=/; Max-Age=${attrs.maxAge}; HttpOnly; SameSite=${attrs.sameSite}${attrs.secure ? '; Secure' : ''}`;
}

/** The default session cookie name: `__Host-` where the browser enforces it (https only). */
export function defaultCookieName(publicUrl: URL): string {
  return publicUrl.protocol === 'https:' ? '__Host-mesh-session' : 'mesh-session';
}
