import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import escapeHtml from 'escape-html';
import { decodeJwt } from 'jose';
import type { Logger } from '../../lib/logger.js';
import { parseCookies, serializeCookie, withoutCookies } from './cookie.js';
import { isProviderRefusal, refusalCode, type IssuedTokens, type OidcClient } from './oidc.js';
import type { LoginRecord, RefreshLocks, SessionRecord, SessionStore } from './store.js';

/**
 * The login at the gateway: a token handler (draft-ietf-oauth-browser-based-apps §6.1, "BFF").
 * The browser holds an opaque cookie; the tokens stay here. Every request passes through
 * `handle` before the Istio rules run: it answers the login's own routes (callback, logout),
 * refuses a request without a session (302 to the provider for a page, 401 JSON for an API
 * call), or returns the headers to forward: the client's copies of the token and claim headers
 * removed, `Authorization: Bearer <access token>` and the configured headers set.
 */

/** Gloo's `claimsToHeaders`: an id token claim copied into a request header. */
export interface ClaimHeader {
  claim: string;
  header: string;
}

export interface LoginOptions {
  /** The origin the browser sees (the redirect_uri and the CSRF origin check derive from it). */
  publicUrl: URL;
  cookieName: string;
  /** Absolute session lifetime (ms). */
  sessionLifetimeMs: number;
  /** A session unused this long ends (ms). */
  sessionIdleMs: number;
  callbackPath: string;
  logoutPath: string;
  /** Paths that are API calls whatever their Accept header says (401, never a redirect). */
  apiPrefixes: string[];
  /** Gloo's `idTokenHeader`: the id token forwarded in this header. */
  idTokenHeader?: string;
  /** Gloo's `accessTokenHeader`: the access token forwarded in this header (besides Authorization). */
  accessTokenHeader?: string;
  claimHeaders: ClaimHeader[];
  /** Refresh this long before the access token expires (ms). */
  refreshAheadMs: number;
  /**
   * With a store shared by replicas: how long a refresh lease lasts (ms). Longer than a call to the
   * provider may take, so a lease never runs out while its holder's refresh can still reach the
   * provider. Default 15 000.
   */
  refreshLeaseMs?: number;
  /** How long a request waits for another replica's refresh before it gives up (ms). Default 5000. */
  refreshWaitMs?: number;
}

/** What the login did, for metrics: every value is from these fixed sets (bounded label cardinality). */
export type LoginEvent =
  | { event: 'login'; outcome: 'started' | 'ok' | 'refused' | 'failed' }
  | { event: 'refresh'; outcome: 'ok' | 'refused' | 'unavailable' }
  | { event: 'logout'; outcome: 'ok' | 'no_session' }
  | { event: 'refused'; outcome: 'login_required' | 'session_expired' | 'csrf_refused' | 'issuer_unavailable' | 'login_state_missing' };

export interface LoginDeps {
  options: LoginOptions;
  oidc: OidcClient;
  store: SessionStore;
  /** The clock (ms since the epoch). */
  now: () => number;
  logger: Logger;
  /** Told of every login, refresh, logout and refusal (the gateway's metrics). */
  onEvent?: (event: LoginEvent) => void;
}

/** The hook the gateway calls first: undefined when the request was answered here, else the headers to forward. */
export interface LoginHook {
  handle(req: IncomingMessage, res: ServerResponse, headers: Record<string, string[]>): Promise<Record<string, string[]> | undefined>;
}

/** How long a login may take between the redirect and the callback. */
const LOGIN_TTL_MS = 10 * 60_000;
/** Used when the provider says nothing of the access token's lifetime and it is no JWT: refresh soon. */
const UNKNOWN_LIFETIME_MS = 60_000;
/** A session's last-seen time is written back at most this often (or half the idle timeout), so reads stay reads. */
const TOUCH_EVERY_MS = 60_000;
/** RFC 9110 §9.2.1: the methods that change nothing. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** How often a request waiting for another replica's refresh reads the session again (ms). */
const LEASE_POLL_MS = 50;
/** Our ids: 32 random bytes, base64url. */
const ID_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** The store key of a cookie value: a copy of the store gives no working cookie. */
const storeKey = (id: string) => createHash('sha256').update(id).digest('base64url');
const newId = () => randomBytes(32).toString('base64url');

function sendJson(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string | string[]> = {}): void {
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function redirect(res: ServerResponse, status: 302 | 303, location: string, cookies: string[] = []): void {
  res.writeHead(status, { location, 'cache-control': 'no-store', 'content-length': 0, ...(cookies.length ? { 'set-cookie': cookies } : {}) });
  res.end();
}

/** A header value from a claim: strings as they are, other JSON as JSON; bytes outside printable ASCII percent-encoded (RFC 9110 §5.5). */
function headerValue(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.replace(/[^\x20-\x7e]/gu, (c) => encodeURIComponent(c));
}

/** When the access token expires: `expires_in` (RFC 6749 §5.1), else the JWT's `exp`, else soon. */
function accessExpiry(tokens: IssuedTokens, now: number): number {
  if (tokens.expiresIn !== undefined) return now + tokens.expiresIn * 1000;
  try {
    const { exp } = decodeJwt(tokens.accessToken);
    if (typeof exp === 'number') return exp * 1000;
  } catch {
    /* an opaque access token */
  }
  return now + UNKNOWN_LIFETIME_MS;
}

/** Only a local path may be returned to after login (no open redirect: not `//host`, not `/\host`). */
function safeReturnTo(url: string | undefined): string {
  return url && url.startsWith('/') && !url.startsWith('//') && !url.startsWith('/\\') ? url : '/';
}

/** Creates the login hook. */
export function createLogin(deps: LoginDeps): LoginHook {
  const { options, store, oidc, logger } = deps;
  const emit = deps.onEvent ?? (() => undefined);
  /** An error answer of the login itself, counted by its code. */
  const sendRefusal = (res: ServerResponse, status: number, code: Extract<LoginEvent, { event: 'refused' }>['outcome'], message: string, headers?: Record<string, string | string[]>) => {
    emit({ event: 'refused', outcome: code });
    sendJson(res, status, code, message, headers);
  };
  const secure = options.publicUrl.protocol === 'https:';
  const origin = options.publicUrl.origin;
  const loginCookie = `${options.cookieName}-login`;
  const ours = new Set([options.cookieName, loginCookie]);
  const stripped = new Set(['authorization', ...[options.idTokenHeader, options.accessTokenHeader, ...options.claimHeaders.map((c) => c.header)].filter((h): h is string => !!h).map((h) => h.toLowerCase())]);
  const inflight = new Map<string, Promise<SessionRecord | 'ended' | 'unavailable'>>();

  const sessionCookie = (id: string) => serializeCookie(options.cookieName, id, { secure, sameSite: 'Strict', maxAge: Math.floor(options.sessionLifetimeMs / 1000) });
  const clearCookie = (name: string) => serializeCookie(name, '', { secure, sameSite: name === loginCookie ? 'Lax' : 'Strict', maxAge: 0 });

  /** An API call gets 401 JSON; a page gets sent to the provider (draft-ietf-oauth-browser-based-apps §6.1.3). */
  const isApiCall = (req: IncomingMessage, path: string): boolean => {
    if (!SAFE_METHODS.has(req.method ?? 'GET')) return true;
    if (req.headers['x-requested-with'] !== undefined) return true;
    const accept = req.headers.accept ?? '';
    if (accept.includes('application/json') && !accept.includes('text/html')) return true;
    return options.apiPrefixes.some((p) => path.startsWith(p));
  };

  /** CSRF (draft-ietf-oauth-browser-based-apps §6.1.3.2): besides SameSite=Strict, a state change must come from our origin, or carry a custom header no other origin can send without a CORS preflight. */
  const crossSite = (req: IncomingMessage): boolean => {
    if (SAFE_METHODS.has(req.method ?? 'GET')) return false;
    const from = req.headers.origin;
    if (from !== undefined) return from !== origin;
    return req.headers['x-requested-with'] === undefined;
  };

  const startLogin = async (req: IncomingMessage, res: ServerResponse, extraCookies: string[] = []): Promise<void> => {
    const start = await oidc.startLogin();
    const id = newId();
    const record: LoginRecord = { kind: 'login', state: start.state, nonce: start.nonce, codeVerifier: start.codeVerifier, returnTo: safeReturnTo(req.url), expiresAt: deps.now() + LOGIN_TTL_MS };
    await store.set(storeKey(id), record);
    // Lax, not Strict: the callback is a top-level navigation from the provider's site.
    const cookie = serializeCookie(loginCookie, id, { secure, sameSite: 'Lax', maxAge: LOGIN_TTL_MS / 1000 });
    emit({ event: 'login', outcome: 'started' });
    redirect(res, 302, start.url.href, [...extraCookies, cookie]);
  };

  const refuse = async (req: IncomingMessage, res: ServerResponse, path: string, code: 'login_required' | 'session_expired', message: string, hadCookie: boolean): Promise<void> => {
    const clear = hadCookie ? [clearCookie(options.cookieName)] : [];
    if (isApiCall(req, path)) {
      sendRefusal(res, 401, code, message, clear.length ? { 'set-cookie': clear } : {});
      return;
    }
    await startLogin(req, res, clear);
  };

  const callback = async (req: IncomingMessage, res: ServerResponse, cookies: Map<string, string>): Promise<void> => {
    if (req.method !== 'GET') {
      sendJson(res, 405, 'method_not_allowed', `${options.callbackPath} answers GET only`, { allow: 'GET' });
      return;
    }
    const id = cookies.get(loginCookie);
    const key = id && ID_PATTERN.test(id) ? storeKey(id) : undefined;
    const pending = key ? await store.get(key) : undefined;
    if (!key || pending?.kind !== 'login') {
      sendRefusal(res, 400, 'login_state_missing', 'No login is under way in this browser (or it took longer than 10 minutes): start again from the page');
      return;
    }
    // A login record is good for one callback only.
    await store.delete(key);
    let tokens: IssuedTokens;
    try {
      tokens = await oidc.finishLogin(new URL(req.url ?? '/', origin), pending);
    } catch (err) {
      const code = refusalCode(err);
      logger.warn({ code }, 'login failed');
      emit({ event: 'login', outcome: isProviderRefusal(err) ? 'refused' : 'failed' });
      sendJson(res, isProviderRefusal(err) ? 401 : 400, 'login_failed', `The login did not complete (${code})`, { 'set-cookie': [clearCookie(loginCookie)] });
      return;
    }
    const now = deps.now();
    const claims = tokens.idClaims ?? {};
    const session: SessionRecord = {
      kind: 'session',
      sub: String(claims.sub ?? ''),
      createdAt: now,
      lastSeenAt: now,
      expiresAt: Math.min(now + options.sessionLifetimeMs, now + options.sessionIdleMs),
      tokens: { accessToken: tokens.accessToken, idToken: tokens.idToken ?? '', refreshToken: tokens.refreshToken, accessExpiresAt: accessExpiry(tokens, now) },
      idClaims: claims,
    };
    const sessionId = newId();
    await store.set(storeKey(sessionId), session);
    logger.info({ sub: session.sub, refreshable: tokens.refreshToken !== undefined }, 'logged in');
    emit({ event: 'login', outcome: 'ok' });
    // A page, not a redirect: the browser does not send a SameSite=Strict cookie on a redirect
    // chain that began on the provider's site, but it does on a navigation this page starts.
    const to = escapeHtml(pending.returnTo);
    const html = `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${to}"><title>Logged in</title><p><a href="${to}">Continue</a></p>`;
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'set-cookie': [sessionCookie(sessionId), clearCookie(loginCookie)],
      'content-length': Buffer.byteLength(html),
    });
    res.end(html);
  };

  const logout = async (req: IncomingMessage, res: ServerResponse, cookies: Map<string, string>): Promise<void> => {
    if (crossSite(req)) {
      sendRefusal(res, 403, 'csrf_refused', 'A logout from another origin is refused');
      return;
    }
    const id = cookies.get(options.cookieName);
    const key = id && ID_PATTERN.test(id) ? storeKey(id) : undefined;
    const session = key ? await store.get(key) : undefined;
    if (key) await store.delete(key);
    const idToken = session?.kind === 'session' ? session.tokens.idToken : undefined;
    if (session?.kind === 'session') logger.info({ sub: session.sub }, 'logged out');
    emit({ event: 'logout', outcome: session?.kind === 'session' ? 'ok' : 'no_session' });
    let target: string = `${origin}/`;
    try {
      target = (await oidc.endSessionUrl(idToken || undefined, `${origin}/`))?.href ?? target;
    } catch (err) {
      logger.warn({ err: { message: err instanceof Error ? err.message : String(err) } }, 'issuer unavailable for logout; the gateway session ended');
    }
    redirect(res, 303, target, [clearCookie(options.cookieName)]);
  };

  type Refreshed = SessionRecord | 'ended' | 'unavailable';
  const due = (session: SessionRecord) => session.tokens.accessExpiresAt - options.refreshAheadMs <= deps.now();
  /** Without new tokens: the ones held while they are good, never an expired one. */
  const whileValid = (session: SessionRecord): Refreshed => (session.tokens.accessExpiresAt > deps.now() ? session : 'unavailable');

  /** The refresh_token grant; a refusal (the grant is gone) deletes the session. */
  const askProvider = async (key: string, session: SessionRecord): Promise<SessionRecord | 'ended' | 'failed'> => {
    const now = deps.now();
    let tokens: IssuedTokens;
    try {
      tokens = await oidc.refresh(session.tokens.refreshToken!);
    } catch (err) {
      if (isProviderRefusal(err)) {
        logger.info({ sub: session.sub, code: refusalCode(err) }, 'refresh refused; session ended');
        emit({ event: 'refresh', outcome: 'refused' });
        await store.delete(key);
        return 'ended';
      }
      logger.warn({ sub: session.sub, err: { message: err instanceof Error ? err.message : String(err) } }, 'refresh failed');
      emit({ event: 'refresh', outcome: 'unavailable' });
      return 'failed';
    }
    return {
      ...session,
      tokens: {
        accessToken: tokens.accessToken,
        idToken: tokens.idToken ?? session.tokens.idToken,
        // RFC 6749 §6: the provider may rotate the refresh token; keep the old one otherwise.
        refreshToken: tokens.refreshToken ?? session.tokens.refreshToken,
        accessExpiresAt: accessExpiry(tokens, now),
      },
      idClaims: tokens.idClaims ?? session.idClaims,
    };
  };
  const refreshedOk = (next: SessionRecord): SessionRecord => {
    logger.info({ sub: next.sub }, 'tokens refreshed');
    emit({ event: 'refresh', outcome: 'ok' });
    return next;
  };

  /** A store of this process alone: the in-process single flight (`fresh`) is the only lock needed. */
  const refreshAlone = async (key: string, session: SessionRecord): Promise<Refreshed> => {
    const next = await askProvider(key, session);
    if (next === 'failed') return whileValid(session);
    if (next === 'ended') return 'ended';
    // A logout while the refresh ran must not be undone by writing the session back.
    if ((await store.get(key))?.kind !== 'session') return 'ended';
    await store.set(key, next);
    return refreshedOk(next);
  };

  /**
   * A store that replicas share: one refresh per session across all of them. The lease's holder
   * asks the provider; the others read the session again until its new tokens are there, and use
   * them. A request that waited `refreshWaitMs` in vain asks nobody (a second refresh with the same
   * refresh token would make the provider revoke the family, RFC 9700 §4.14.2): it goes on with the
   * token held while that is good, else answers 503.
   */
  const refreshShared = async (locks: RefreshLocks, key: string, session: SessionRecord): Promise<Refreshed> => {
    const waits = Math.ceil((options.refreshWaitMs ?? 5000) / LEASE_POLL_MS);
    for (let wait = 0; ; wait += 1) {
      const claim = await locks.claim(key, options.refreshLeaseMs ?? 15_000);
      if (!claim) return 'ended';
      const current = claim.record;
      if (current.tokens.accessToken !== session.tokens.accessToken || !due(current)) {
        // Another replica refreshed meanwhile: its tokens, and no call to the provider.
        if (claim.lease) await locks.release(key, claim.lease);
        return current;
      }
      if (claim.lease) {
        const next = await askProvider(key, current);
        if (next === 'ended') return 'ended';
        if (next === 'failed') {
          await locks.release(key, claim.lease);
          return whileValid(current);
        }
        if (await locks.commit(key, claim.lease, next)) return refreshedOk(next);
        // A logout while the refresh ran wins; else the lease ran out and another replica claimed it.
        if ((await store.get(key))?.kind !== 'session') return 'ended';
        logger.warn({ sub: current.sub }, 'refresh lease ran out before the refresh was written; its tokens serve this request only');
        return next;
      }
      if (wait >= waits) {
        logger.warn({ sub: current.sub }, 'another replica holds the refresh lease; the session was not refreshed here');
        return whileValid(current);
      }
      await new Promise((resolve) => setTimeout(resolve, LEASE_POLL_MS));
    }
  };

  /** The session with an access token good for now: refreshed ahead of expiry, one refresh at a time per session. */
  const fresh = async (key: string, session: SessionRecord): Promise<Refreshed> => {
    const now = deps.now();
    if (!due(session)) return session;
    if (!session.tokens.refreshToken) return session.tokens.accessExpiresAt > now ? session : 'ended';
    let running = inflight.get(key);
    if (!running) {
      const locks = store.refreshLocks;
      running = (locks ? refreshShared(locks, key, session) : refreshAlone(key, session)).finally(() => inflight.delete(key));
      inflight.set(key, running);
    }
    return running;
  };

  const forwardHeaders = (headers: Record<string, string[]>, session: SessionRecord): Record<string, string[]> => {
    const out: Record<string, string[]> = {};
    for (const [name, values] of Object.entries(headers)) if (!stripped.has(name) && name !== 'cookie') out[name] = values;
    const cookie = withoutCookies(headers.cookie, ours);
    if (cookie !== undefined) out.cookie = [cookie];
    out.authorization = [`Bearer ${session.tokens.accessToken}`];
    if (options.idTokenHeader) out[options.idTokenHeader.toLowerCase()] = [session.tokens.idToken];
    if (options.accessTokenHeader) out[options.accessTokenHeader.toLowerCase()] = [session.tokens.accessToken];
    for (const { claim, header } of options.claimHeaders) {
      const value = session.idClaims[claim];
      if (value !== undefined && value !== null) out[header.toLowerCase()] = [headerValue(value)];
    }
    return out;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, headers: Record<string, string[]>): Promise<Record<string, string[]> | undefined> => {
    const path = (req.url ?? '/').split('?')[0]!;
    const cookies = parseCookies(headers.cookie);
    if (path === options.callbackPath) {
      req.resume();
      await callback(req, res, cookies);
      return undefined;
    }
    if (path === options.logoutPath) {
      req.resume();
      await logout(req, res, cookies);
      return undefined;
    }
    const id = cookies.get(options.cookieName);
    const key = id && ID_PATTERN.test(id) ? storeKey(id) : undefined;
    const record = key ? await store.get(key) : undefined;
    if (!key || record?.kind !== 'session') {
      req.resume();
      await refuse(req, res, path, 'login_required', 'Log in first: this request carries no valid session', id !== undefined);
      return undefined;
    }
    if (crossSite(req)) {
      req.resume();
      sendRefusal(res, 403, 'csrf_refused', 'A state-changing request must come from this origin (Origin header) or carry X-Requested-With');
      return undefined;
    }
    const session = await fresh(key, record);
    if (session === 'ended') {
      req.resume();
      await refuse(req, res, path, 'session_expired', 'The session ended: its tokens could not be refreshed; log in again', true);
      return undefined;
    }
    if (session === 'unavailable') {
      req.resume();
      sendRefusal(res, 503, 'issuer_unavailable', 'The identity provider cannot be reached to refresh the session; try again shortly');
      return undefined;
    }
    const now = deps.now();
    if (now - session.lastSeenAt >= Math.min(TOUCH_EVERY_MS, options.sessionIdleMs / 2)) {
      await store.touch(key, now, Math.min(session.createdAt + options.sessionLifetimeMs, now + options.sessionIdleMs));
    }
    return forwardHeaders(headers, session);
  };

  return {
    async handle(req, res, headers) {
      try {
        return await handle(req, res, headers);
      } catch (err) {
        // Discovery or a token call that did not reach the provider.
        logger.warn({ err: { message: err instanceof Error ? err.message : String(err) } }, 'issuer unavailable');
        req.resume();
        if (!res.headersSent) sendRefusal(res, 503, 'issuer_unavailable', 'The identity provider cannot be reached; try again shortly');
        return undefined;
      }
    },
  };
}
