import * as oauth from 'oauth4webapi';
import { decodeToken } from '../../lib/tokeninfo.js';
import { loadDiscovery, type Discovery } from './api.js';
import { byId, h, json, show, valueOf, verdict } from './dom.js';

/**
 * The Login panel: the authorization-code flow with PKCE (RFC 7636) as a test client, each step
 * shown, like mock-oauth2-server's debugger. oauth4webapi builds and checks the OAuth messages.
 * The state of a flow in progress lives in sessionStorage (this tab only) until the redirect back.
 */

const PENDING = 'jwt-console-login';

interface Pending {
  verifier: string;
  state: string;
  nonce: string;
  clientId: string;
  redirectUri: string;
  /** The authorization request as sent, shown again once the flow is back. */
  authorizeUrl: string;
}

/** http is allowed only when the console itself is served over http (a factory on loopback). */
const insecure = () => ({ [oauth.allowInsecureRequests]: location.protocol === 'http:' });

const step = (title: string, ...body: Array<Node | string | null>) => h('li', {}, h('strong', {}, title), ...body);

/** The authorization URL, one parameter a line. */
const authorizationRequest = (url: string) => h('pre', { tabindex: 0, 'aria-label': 'Authorization request' }, url.replace(/&/g, '\n  &'));

function decoded(label: string, token: unknown): HTMLElement | null {
  if (typeof token !== 'string') return null;
  try {
    const d = decodeToken(token, new Date());
    return h('div', {}, h('h3', {}, label), h('p', { class: 'hint' }, `${d.header.alg}, kid ${String(d.header.kid)}, ${d.status}`), json(d.payload, label));
  } catch {
    return h('p', {}, `${label}: not a JWT (opaque)`);
  }
}

/** An OAuth error as RFC 6749 §5.2 names it (`error: description`, also from a WWW-Authenticate challenge), else the message. */
function describeError(err: unknown): string {
  const e = err as { error?: string; error_description?: string; message?: string; cause?: unknown };
  const challenge = Array.isArray(e.cause) ? (e.cause[0] as { parameters?: { error?: string; error_description?: string } })?.parameters : (e.cause as { error?: string; error_description?: string } | undefined);
  const code = e.error ?? challenge?.error;
  const description = e.error_description ?? challenge?.error_description;
  return code ? `${code}${description ? `: ${description}` : ''}` : e.message ?? String(err);
}

/**
 * The discovery document came from this console's own factory, whose endpoints sit under
 * PUBLIC_URL. When PUBLIC_URL names another origin for the same factory (127.0.0.1 while the
 * browser says localhost, say), the same paths are asked on this origin: the console's CSP
 * (connect-src 'self') and CORS would refuse the other one.
 */
export function onThisOrigin(endpoint: string | undefined, origin: string): string | undefined {
  if (endpoint === undefined) return undefined;
  const url = new URL(endpoint);
  return url.origin === origin ? endpoint : new URL(`${url.pathname}${url.search}`, origin).href;
}

/** The provider as oauth4webapi sees it, its token and userinfo endpoints on this origin. */
function serverOf(discovery: Discovery): oauth.AuthorizationServer {
  return { ...(discovery as unknown as oauth.AuthorizationServer), token_endpoint: onThisOrigin(discovery.token_endpoint, location.origin), userinfo_endpoint: onThisOrigin(discovery.userinfo_endpoint, location.origin) };
}

/** Completes a flow when the page is the redirect target (?code= or ?error= with a flow pending). Returns true when it did. */
async function finish(discovery: Discovery, steps: HTMLElement, status: HTMLElement): Promise<boolean> {
  const params = new URLSearchParams(location.search);
  const saved = sessionStorage.getItem(PENDING);
  if (!saved || (!params.has('code') && !params.has('error'))) return false;
  sessionStorage.removeItem(PENDING);
  // The code must not stay in the address bar or the history.
  history.replaceState(null, '', `${location.pathname}#login`);
  const pending = JSON.parse(saved) as Pending;
  const as = serverOf(discovery);
  const client: oauth.Client = { client_id: pending.clientId };
  const shown: HTMLElement[] = [step('1. Authorization request', ' sent; the provider redirected back to ', h('code', {}, pending.redirectUri), authorizationRequest(pending.authorizeUrl))];
  try {
    const callback = oauth.validateAuthResponse(as, client, params, pending.state);
    shown.push(step('2. Code received', ` (${callback.get('code')?.length ?? 0} characters, state checked)`));
    const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), callback, pending.redirectUri, pending.verifier, insecure());
    const tokens = await oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: pending.nonce, requireIdToken: true });
    shown.push(step('3. Token response', ` from ${as.token_endpoint}`, json({ ...tokens, access_token: '…', id_token: '…', refresh_token: tokens.refresh_token ? '…' : undefined }, 'Token response')));
    shown.push(step('4. Tokens', decoded('id token', tokens.id_token), decoded('access token', tokens.access_token)));
    let userinfoProblem: string | undefined;
    if (discovery.userinfo_endpoint) {
      // Userinfo is one more look, not part of the login: a provider may refuse an access token meant for an API (RFC 9068 audience).
      try {
        const claims = oauth.getValidatedIdTokenClaims(tokens);
        const info = await oauth.processUserInfoResponse(as, client, claims?.sub ?? oauth.skipSubjectCheck, await oauth.userInfoRequest(as, client, tokens.access_token, insecure()));
        shown.push(step('5. Userinfo', ` from ${as.userinfo_endpoint}`, json(info, 'Userinfo')));
      } catch (err) {
        userinfoProblem = describeError(err);
        shown.push(step('5. Userinfo refused', ` by ${as.userinfo_endpoint}: ${userinfoProblem}`));
      }
    }
    show(status, userinfoProblem ? verdict('warn', 'Logged in; userinfo refused the access token', userinfoProblem) : verdict('ok', 'Logged in: every step passed'));
  } catch (err) {
    shown.push(step('Failed', ` ${describeError(err)}`));
    show(status, verdict('bad', 'The login did not complete', describeError(err)));
  }
  show(steps, ...shown);
  return true;
}

export function setupLoginPanel(select: () => void): void {
  const status = byId('login-status');
  const steps = byId('login-steps');
  const redirect = byId<HTMLInputElement>('login-redirect');
  redirect.value = `${location.origin}/console/`;
  let discovery: Discovery | undefined;

  void (async () => {
    try {
      discovery = await loadDiscovery();
    } catch (err) {
      show(status, verdict('bad', 'Cannot read the discovery document', (err as Error).message));
      return;
    }
    if (await finish(discovery, steps, status)) select();
  })();

  byId<HTMLFormElement>('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    discovery ??= await loadDiscovery().catch(() => undefined);
    if (!discovery?.authorization_endpoint || !discovery.token_endpoint) {
      show(status, verdict('warn', 'This factory runs without an OpenID provider', 'Its discovery document names no authorization_endpoint: start it with OIDC_CONFIG (e.g. jwt-factory/oidc.demo.yaml) to log in here.'));
      show(steps);
      return;
    }
    const verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const nonce = oauth.generateRandomNonce();
    const clientId = valueOf('login-client');
    const redirectUri = valueOf('login-redirect');
    const url = new URL(discovery.authorization_endpoint);
    url.search = new URLSearchParams({
      client_id: clientId,
      redirect_uri: redirectUri,
      response_type: 'code',
      scope: valueOf('login-scope'),
      state,
      nonce,
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    }).toString();
    const pending: Pending = { verifier, state, nonce, clientId, redirectUri, authorizeUrl: url.href };
    sessionStorage.setItem(PENDING, JSON.stringify(pending));
    show(status, verdict('ok', 'Authorization request ready'));
    show(steps, step('1. Authorization request', authorizationRequest(url.href), h('a', { href: url.href, id: 'login-continue' }, 'Continue to the login page')));
  });
}
