import escapeHtml from 'escape-html';
import type { Redirect } from './authorize.js';

/**
 * The provider's HTML: the login form, the form_post page, error and logout pages. Server
 * rendered, usable without JavaScript, every interpolated value escaped. Styles and the one
 * script (form_post's auto-submit) carry the response's CSP nonce: nothing inline runs without it.
 */

const e = (value: string | undefined) => escapeHtml(value ?? '');

const STYLE = `body{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1.2rem}.error{color:#a00;background:#fee;padding:.5rem;border-radius:4px}.muted{color:#666;font-size:.9rem}`;

function page(title: string, nonce: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${e(title)}</title><style nonce="${e(nonce)}">${STYLE}</style></head>
<body>${body}</body></html>
`;
}

export interface LoginPage {
  clientName: string;
  /** The authorization request, carried back to POST /login. */
  request: string;
  csrf: string;
  action: string;
  username?: string;
  error?: string;
  nonce: string;
}

/** The login form: inputs `username` and `password`, a CSRF token and the authorization request as hidden fields. */
export function loginPage(p: LoginPage): string {
  return page(
    'Log in',
    p.nonce,
    `<h1>Log in to ${e(p.clientName)}</h1>
${p.error ? `<p class="error" role="alert">${e(p.error)}</p>` : ''}
<form method="post" action="${e(p.action)}">
<input type="hidden" name="csrf" value="${e(p.csrf)}">
<input type="hidden" name="request" value="${e(p.request)}">
<label for="username">Username</label><input type="text" id="username" name="username" value="${e(p.username)}" autocomplete="username" required autofocus>
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>
<p class="muted">jwt-factory OpenID Connect provider</p>`,
  );
}

/** OAuth 2.0 Form Post Response Mode §2: a form that posts the response to the client, submitted by script or by the button. */
export function formPostPage(redirect: Redirect, nonce: string): string {
  const fields = Object.entries(redirect.params).map(([name, value]) => `<input type="hidden" name="${e(name)}" value="${e(value)}">`).join('\n');
  return page(
    'Continue',
    nonce,
    `<form method="post" action="${e(redirect.uri)}">
${fields}
<noscript><p>JavaScript is off: press the button to continue.</p></noscript>
<button type="submit">Continue</button>
</form>
<script nonce="${e(nonce)}">document.forms[0].submit();</script>`,
  );
}

/** An error the user must see (an untrusted client or redirect_uri is never redirected to). */
export function errorPage(title: string, description: string, nonce: string): string {
  return page(title, nonce, `<h1>${e(title)}</h1><p class="error" role="alert">${e(description)}</p>`);
}

/** After RP-initiated logout without a post_logout_redirect_uri. */
export function loggedOutPage(nonce: string): string {
  return page('Logged out', nonce, '<h1>You are logged out</h1><p>You can close this window.</p>');
}
