import { randomBytes } from 'node:crypto';
import { parse as parseCookies } from 'cookie';
import express, { Router, type ErrorRequestHandler, type Request, type Response } from 'express';
import { authenticateClient, forwardedPeer } from './clientauth.js';
import { authorize, endSession, issueCode, logoutTarget, requestFromForm, startSession, validateAuthorization, type AuthorizationRequest, type Redirect } from './authorize.js';
import { OAuthError, oauthError } from './errors.js';
import { JWT_BEARER_GRANT } from './config.js';
import { checkPassword, tokenRequest } from './grants.js';
import { assertionGrant } from './jwtbearer.js';
import { errorPage, formPostPage, loggedOutPage, loginPage } from './pages.js';
import { readParams } from './params.js';
import type { OidcProvider } from './provider.js';
import { bearerChallenge, introspect, revoke, userinfo } from './resources.js';
import { constantTimeEqual } from './secrets.js';

/**
 * The provider's HTTP face: thin handlers that read the request, call the core and shape the
 * answer. OAuth errors answer RFC 6749 §5.2 JSON at the API endpoints and an HTML page at the
 * browser ones (authorize, login, logout).
 */

export const SESSION_COOKIE = 'jwtf_session';
export const CSRF_COOKIE = 'jwtf_csrf';
const PAGE_PATHS = new Set(['/authorize', '/login', '/logout']);

export interface OidcRouterOptions {
  /** Largest form body (BODY_LIMIT). */
  bodyLimit: string;
  /** Cookies get `Secure` when the provider is served over https (PUBLIC_URL). */
  secureCookies: boolean;
  sessionTtl: number;
}

/** Security headers of every HTML answer: a CSP with a per-response nonce, no framing, no caching. */
function pageHeaders(res: Response, formTargets: readonly string[] = []): string {
  const nonce = randomBytes(16).toString('base64');
  const origins = [...new Set(formTargets.map((uri) => new URL(uri).origin))].join(' ');
  res.set({
    // form-action also governs the redirect after POST /login (Chromium enforces it), so the client's origin is listed.
    'Content-Security-Policy': `default-src 'none'; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}'; form-action 'self'${origins ? ` ${origins}` : ''}; frame-ancestors 'none'; base-uri 'none'`,
    'X-Frame-Options': 'DENY',
    'Cache-Control': 'no-store',
    Pragma: 'no-cache',
    'Referrer-Policy': 'no-referrer',
    'X-Content-Type-Options': 'nosniff',
  });
  res.type('html');
  return nonce;
}

/** The token endpoint's headers (RFC 6749 §5.1). */
const noStore = (res: Response) => res.set({ 'Cache-Control': 'no-store', Pragma: 'no-cache' });

/** Sends the browser to the client: a 303 with the parameters in the query, or a form_post page. */
function sendRedirect(res: Response, redirect: Redirect): void {
  if (redirect.mode === 'form_post') {
    const nonce = pageHeaders(res, [redirect.uri]);
    res.status(200).send(formPostPage(redirect, nonce));
    return;
  }
  const target = new URL(redirect.uri);
  for (const [name, value] of Object.entries(redirect.params)) target.searchParams.set(name, value);
  res.set('Cache-Control', 'no-store');
  res.redirect(303, target.href);
}

const cookies = (req: Request) => parseCookies(req.headers.cookie ?? '');
/** The address the login limiter counts: the peer (the factory trusts no proxy header). */
const addressOf = (req: Request) => req.socket.remoteAddress ?? 'unknown';

/** Builds the provider's router; mounted by the factory's createApp when OIDC_CONFIG is set. */
export function oidcRouter(provider: OidcProvider, options: OidcRouterOptions): Router {
  const ctx = provider.context;
  const router = Router();
  // extended: false is Node's querystring: a repeated name becomes an array, which readParams refuses.
  const form = express.urlencoded({ extended: false, limit: options.bodyLimit, parameterLimit: 100 });
  const cookieOptions = { httpOnly: true, sameSite: 'lax' as const, secure: options.secureCookies, path: '/' };

  /** The form of a POST, refusing any other content type (RFC 6749 §3.2). */
  const formParams = (req: Request) => {
    if (!req.is('application/x-www-form-urlencoded')) throw oauthError('invalid_request', 'The body must be application/x-www-form-urlencoded');
    return readParams(req.body);
  };

  const showLogin = (res: Response, req: Request, request: AuthorizationRequest, status = 200, error?: string, username?: string) => {
    let csrf = cookies(req)[CSRF_COOKIE];
    if (!csrf || !/^[A-Za-z0-9_-]{43}$/.test(csrf)) {
      csrf = randomBytes(32).toString('base64url');
      // Strict: the form posts from our own page, so the token never needs to travel cross-site.
      res.cookie(CSRF_COOKIE, csrf, { ...cookieOptions, sameSite: 'strict' });
    }
    const nonce = pageHeaders(res, [request.redirectUri]);
    res.status(status).send(loginPage({ clientName: request.client.displayName, request: request.raw, csrf, action: ctx.endpoints.login, username: username ?? request.loginHint, error, nonce }));
  };

  const authorizeHandler = async (req: Request, res: Response) => {
    const source = req.method === 'POST' ? formParams(req) : readParams(req.query);
    const raw = req.method === 'POST' ? new URLSearchParams(source.params as Record<string, string>).toString() : (req.originalUrl.split('?')[1] ?? '');
    const outcome = await authorize(ctx, source.params, source.multi, raw, cookies(req)[SESSION_COOKIE]);
    if (outcome.kind === 'redirect') sendRedirect(res, outcome.redirect);
    else showLogin(res, req, outcome.request);
  };
  router.get('/authorize', authorizeHandler);
  // OIDC Core §3.1.2.1: the authorization endpoint must support POST too.
  router.post('/authorize', form, authorizeHandler);

  router.post('/login', form, async (req, res) => {
    const { params } = formParams(req);
    const carried = requestFromForm(params.request);
    const request = validateAuthorization(ctx, carried.params, carried.multi, carried.raw);
    if (!('client' in request)) return sendRedirect(res, request);
    const csrf = cookies(req)[CSRF_COOKIE];
    if (csrf === undefined || params.csrf === undefined || !constantTimeEqual(csrf, params.csrf)) {
      return showLogin(res, req, request, 403, 'The form expired: please log in again.');
    }
    const username = params.username ?? '';
    const checked = await checkPassword(ctx, username, params.password ?? '', addressOf(req));
    if ('refused' in checked) {
      if (checked.refused === 'locked') res.set('Retry-After', String(checked.retryAfter));
      // One sentence for a wrong name and a wrong password alike: it must not tell which was wrong.
      const message = checked.refused === 'locked' ? `Too many failed attempts: try again in ${checked.retryAfter} seconds.` : 'Wrong username or password.';
      return showLogin(res, req, request, checked.refused === 'locked' ? 429 : 401, message, username);
    }
    await endSession(ctx, cookies(req)[SESSION_COOKIE]);
    const { cookie, session } = await startSession(ctx, checked.user);
    res.cookie(SESSION_COOKIE, cookie, { ...cookieOptions, maxAge: options.sessionTtl * 1000 });
    sendRedirect(res, await issueCode(ctx, request, session));
  });

  router.post('/token', form, async (req, res) => {
    const { params, multi } = formParams(req);
    const authorization = req.get('authorization');
    const forwardedClientCert = req.get('x-forwarded-client-cert');
    // RFC 7523 §3.1: with the jwt-bearer grant, client authentication is optional; the assertion is the credential.
    if (params.grant_type === JWT_BEARER_GRANT && authorization === undefined && params.client_id === undefined && params.client_assertion === undefined) {
      forwardedPeer(ctx, forwardedClientCert);
      res.locals.log = { grantType: params.grant_type };
      noStore(res).json(await assertionGrant(ctx, undefined, params, multi));
      return;
    }
    const client = await authenticateClient(ctx, { authorization, params, forwardedClientCert }, ctx.endpoints.token);
    const response = await tokenRequest(ctx, client, params, multi, { address: addressOf(req) });
    res.locals.log = { clientId: client.client_id, grantType: params.grant_type };
    noStore(res).json(response);
  });

  const userinfoHandler = async (req: Request, res: Response) => {
    const header = req.get('authorization');
    const fromHeader = header === undefined ? undefined : /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(header)?.[1];
    const fromBody = req.method === 'POST' && req.is('application/x-www-form-urlencoded') ? readParams(req.body).params.access_token : undefined;
    if (header !== undefined && fromHeader === undefined) throw oauthError('invalid_request', 'The Authorization header must be Bearer <token>');
    // RFC 6750 §2: one way of sending the token per request.
    if (fromHeader !== undefined && fromBody !== undefined) throw oauthError('invalid_request', 'Send the access token once');
    const token = fromHeader ?? fromBody;
    if (token === undefined) {
      res.set('WWW-Authenticate', 'Bearer realm="jwt-factory"');
      throw oauthError('invalid_token', 'An access token is required');
    }
    noStore(res).json(await userinfo(ctx, token));
  };
  router.get('/userinfo', userinfoHandler);
  router.post('/userinfo', form, userinfoHandler);

  router.post('/introspect', form, async (req, res) => {
    const { params } = formParams(req);
    const client = await authenticateClient(ctx, { authorization: req.get('authorization'), params, forwardedClientCert: req.get('x-forwarded-client-cert') }, ctx.endpoints.introspection);
    // RFC 7662 §2.1: only an authenticated client may introspect; a public one has no secret to prove it.
    if (client.token_endpoint_auth_method === 'none') throw oauthError('invalid_client', 'A public client may not introspect tokens');
    res.locals.log = { clientId: client.client_id };
    noStore(res).json(await introspect(ctx, params));
  });

  router.post('/revoke', form, async (req, res) => {
    const { params } = formParams(req);
    const client = await authenticateClient(ctx, { authorization: req.get('authorization'), params, forwardedClientCert: req.get('x-forwarded-client-cert') }, ctx.endpoints.revocation);
    await revoke(ctx, client, params);
    res.locals.log = { clientId: client.client_id };
    noStore(res).status(200).end();
  });

  router.get('/logout', async (req, res) => {
    const { params } = readParams(req.query);
    const target = await logoutTarget(ctx, params);
    await endSession(ctx, cookies(req)[SESSION_COOKIE]);
    res.clearCookie(SESSION_COOKIE, cookieOptions);
    if (target) {
      res.set('Cache-Control', 'no-store');
      return res.redirect(303, target);
    }
    const nonce = pageHeaders(res);
    res.status(200).send(loggedOutPage(nonce));
  });

  router.use(oauthErrorHandler());
  return router;
}

/** body-parser's failures, as the OAuth error every client understands. */
function fromParser(err: { type?: string; status?: number }): OAuthError | undefined {
  if (typeof err?.type !== 'string' || typeof err.status !== 'number' || err.status >= 500) return undefined;
  const described: Record<string, string> = {
    'entity.too.large': 'The request body is too large',
    'parameters.too.many': 'The request has too many parameters',
    'encoding.unsupported': 'The request body encoding is not supported',
    'charset.unsupported': 'The request body charset is not supported',
    'request.aborted': 'The request was aborted',
  };
  return new OAuthError('invalid_request', described[err.type] ?? 'The request body could not be read', { status: err.status });
}

/** RFC 6749 §5.2 JSON at the API endpoints, an error page at the browser ones; anything else goes on to the factory's handler. */
function oauthErrorHandler(): ErrorRequestHandler {
  return (err, req, res, next) => {
    const oauth = err instanceof OAuthError ? err : fromParser(err);
    if (!oauth || res.headersSent) return next(err);
    if (oauth.headers) res.set(oauth.headers);
    if (PAGE_PATHS.has(req.path)) {
      const nonce = pageHeaders(res);
      res.status(oauth.status).send(errorPage(oauth.page ? 'This link cannot be used' : 'Something went wrong', oauth.message, nonce));
      return;
    }
    if (oauth.wwwAuthenticate) res.set('WWW-Authenticate', oauth.wwwAuthenticate);
    else if (req.path === '/userinfo' && (oauth.code === 'invalid_token' || oauth.code === 'insufficient_scope')) res.set('WWW-Authenticate', bearerChallenge(oauth));
    noStore(res).status(oauth.status).json(oauth.toJSON());
  };
}
