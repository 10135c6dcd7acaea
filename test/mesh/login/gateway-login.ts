import { expect } from 'vitest';
import { cookieJar, hiddenField } from '../../factory/oidc/harness.js';

/**
 * The browser's part of a login through a mesh-gateway listening on `gatewayPort`, with the
 * factory at `issuer` and alice's password: answers the value of the `mesh-session` cookie.
 */
export async function loginThrough(gatewayPort: number, issuer: string): Promise<string> {
  const start = await fetch(`http://127.0.0.1:${gatewayPort}/`, { redirect: 'manual', headers: { accept: 'text/html' } });
  expect(start.status).toBe(302);
  let gatewayJar = cookieJar('', start.headers.getSetCookie());
  const page = await fetch(start.headers.get('location')!);
  const html = await page.text();
  const factoryJar = cookieJar('', page.headers.getSetCookie());
  const form = new URLSearchParams({ csrf: hiddenField(html, 'csrf'), request: hiddenField(html, 'request'), username: 'alice', password: 'alice-password' });
  const done = await fetch(`${issuer}/login`, { method: 'POST', redirect: 'manual', headers: { cookie: factoryJar, 'content-type': 'application/x-www-form-urlencoded' }, body: form });
  expect(done.status).toBe(303);
  // The redirect_uri names the public origin; the callback is served by this gateway behind it.
  const callback = new URL(done.headers.get('location')!);
  const back = await fetch(`http://127.0.0.1:${gatewayPort}${callback.pathname}${callback.search}`, { redirect: 'manual', headers: { cookie: gatewayJar } });
  expect(back.status).toBe(200);
  gatewayJar = cookieJar(gatewayJar, back.headers.getSetCookie());
  return /(?:^|; )mesh-session=([^;]+)/.exec(gatewayJar)![1]!;
}

/** An API call through the gateway on `gatewayPort` with the session cookie. */
export const apiCall = (gatewayPort: number, cookie: string) =>
  fetch(`http://127.0.0.1:${gatewayPort}/api/serviceb`, { headers: { accept: 'application/json', cookie: `mesh-session=${cookie}` } });
