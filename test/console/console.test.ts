import { createServer, type Server } from 'node:http';
import { chromium, type Browser, type Page } from 'playwright-core';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen } from '../../lib/server.js';
import { makeFactory } from '../factory/harness.js';
import { CHROMIUM, CHROMIUM_ARGS, requireTool } from '../helpers/tools.js';
import { screenshot } from './shots.js';

/**
 * The console in a real headless Chromium against a factory on a real port: each panel's main path
 * and its errors, keyboard use, no CSP violation, and a screenshot of each panel for the README.
 */

type Factory = Awaited<ReturnType<typeof makeFactory>>;
let f: Factory;
let server: Server;
let base: string;
let browser: Browser;
let page: Page;
const problems: string[] = [];
const requests: string[] = [];

const shot = (name: string, fullPage = false) => screenshot(page, name, fullPage);
const issue = async (keyId: string, claims: object, query = '') => (await request(f.app).post(`/issueToken/${keyId}${query}`).send(claims).expect(200)).text;
const text = (selector: string) => page.locator(selector).innerText();

beforeAll(async () => {
  requireTool('chromium', CHROMIUM);
  f = await makeFactory({ ROTATION_PUBLISH_AHEAD: '0' });
  const now = f.time.clock().getTime();
  // servicea and serviceb were created an hour ago; serviceb was rotated 10 min ago with a key that signs 10 min from now.
  f.time.set(new Date(now - 3_600_000));
  await request(f.app).post('/keys/servicea').expect(200);
  await request(f.app).post('/keys/serviceb?alg=ES256').expect(200);
  f.time.set(new Date(now - 600_000));
  await request(f.app).post('/keys/serviceb/rotate?publishAhead=1200').expect(200);
  f.time.set(new Date(now));
  await request(f.app).post('/keys/fresh?alg=EdDSA').expect(200);
  server = createServer(f.app);
  base = `http://127.0.0.1:${await listen(server, 0, '127.0.0.1')}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('request', (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}`));
  await page.goto(`${base}/console`);
  await page.locator('#factory-info').filter({ hasText: 'issuer https://jwt-factory/' }).waitFor();
});

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => server?.close(resolve));
  await f?.cleanup();
});

describe('GET /console', () => {
  it('serves the page, script and stylesheet with a strict CSP and ETag revalidation', async () => {
    const res = await request(f.app).get('/console/').expect(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    expect(res.headers['content-security-policy']).not.toContain('unsafe-inline');
    expect(res.text).not.toMatch(/<script>|<style>|https?:\/\/(?!www\.w3\.org)/);
    const js = await request(f.app).get('/console/app.js').expect(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    await request(f.app).get('/console/app.js').set('If-None-Match', js.headers.etag!).expect(304);
    expect((await request(f.app).get('/console').expect(301)).headers.location).toBe('/console/');
    expect((await request(f.app).get('/console/missing.js').expect(404)).body.error.code).toBe('route_not_found');
  });
});

describe('the Token panel', () => {
  it('decodes and verifies in the browser, names the signing keyId, and sends the token nowhere', async () => {
    const token = await issue('servicea', { aud: 'serviceb' });
    requests.length = 0;
    await page.fill('#token-input', token);
    await page.fill('#token-aud', 'serviceb');
    await page.click('#token-check');
    await page.locator('#token-verdict .verdict.ok').waitFor();
    expect(await text('#token-verdict')).toContain('Valid');
    expect(await text('#token-signer')).toMatch(/kid \S+ → keyId servicea \(signing\)/);
    expect(await text('#token-lifetime')).toMatch(/^expires in (59 min|1 h)$/);
    expect(requests.filter((r) => !r.startsWith('GET '))).toEqual([]);
    await shot('token');
  });

  it('names each failed check as /verify does: an expired token for another audience', async () => {
    await page.fill('#token-input', await issue('servicea', { aud: 'servicec' }, '?expired=1'));
    await page.click('#token-check');
    await page.locator('#token-verdict .verdict.bad', { hasText: 'TokenExpiredError' }).waitFor();
    expect(await text('#token-verdict .verdict')).toContain('Refused: TokenExpiredError (expired): jwt expired');
    const failed = await page.locator('#token-checks tr[data-failed="true"]').allInnerTexts();
    expect(failed.join('\n')).toMatch(/exp \/ nbf.*TokenExpiredError \(expired\)/);
    expect(failed.join('\n')).toMatch(/aud ∋ serviceb.*JsonWebTokenError \(audience_invalid\)/);
  });

  it('says a malformed token is malformed, and a pasted JWKS without the kid cannot verify it', async () => {
    await page.fill('#token-input', 'not.a-token');
    await page.click('#token-check');
    await page.locator('#token-verdict .verdict.bad', { hasText: 'Malformed' }).waitFor();
    expect(await text('#token-verdict')).toContain('Malformed token: JsonWebTokenError (malformed)');
    expect(await page.getAttribute('#token-input', 'aria-invalid')).toBe('true');

    await page.fill('#token-input', await issue('servicea', { aud: 'serviceb' }));
    await page.check('input[name="token-keys"][value="pasted"]');
    await page.fill('#token-jwks', (await request(f.app).get('/keys/fresh/jwks.json')).text);
    await page.click('#token-check');
    await page.locator('#token-verdict .verdict.bad', { hasText: 'unknown_kid' }).waitFor();
    expect(await text('#token-verdict .verdict')).toContain('Refused: JsonWebTokenError (unknown_kid): no key matches the jwt kid');
    await page.fill('#token-jwks', '{ not json');
    await page.click('#token-check');
    await page.locator('#token-verdict .verdict.bad', { hasText: 'not valid JSON' }).waitFor();
    await page.check('input[name="token-keys"][value="factory"]');
  });

  it('verifies on the server only when asked, with POST /verify/<keyId>', async () => {
    await page.fill('#token-input', await issue('servicea', { aud: 'serviceb' }));
    await page.fill('#token-sub', 'servicea');
    requests.length = 0;
    await page.click('#token-server');
    await page.locator('#token-verdict .verdict.ok', { hasText: 'Valid on the server' }).waitFor();
    expect(requests).toContain('POST /verify/servicea');
    await page.fill('#token-sub', 'someone-else');
    await page.click('#token-server');
    await page.locator('#token-verdict .verdict.bad', { hasText: 'subject_invalid' }).waitFor();
    await page.fill('#token-sub', '');
  });
});

describe('the Mint panel', () => {
  it('is driven from the keyboard: tabs by arrow key, invalid claims refused in place, a variant with its verdict', async () => {
    await page.focus('#tab-token');
    await page.keyboard.press('ArrowRight');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('tab-mint');
    expect(await page.isVisible('#panel-mint')).toBe(true);
    await page.focus('#mint-claims');
    await page.keyboard.press('ControlOrMeta+a');
    await page.keyboard.type('{ "aud": 42 }');
    expect(await text('#mint-claims-error')).toBe('aud must be a string or a list of strings');
    expect(await page.getAttribute('#mint-claims', 'aria-invalid')).toBe('true');
    await page.keyboard.press('ControlOrMeta+a');
    await page.keyboard.type('{ "aud": "serviceb", "scope": "read" }');
    expect(await page.getAttribute('#mint-claims', 'aria-invalid')).toBeNull();
    await page.focus('#mint-variant');
    await page.selectOption('#mint-variant', 'wrong-audience');
    expect(await text('#mint-variant-verdict')).toContain('403 Audiences in Jwt are not allowed');
    await page.focus('#mint-submit');
    await page.keyboard.press('Enter');
    await page.locator('#mint-status .verdict.ok').waitFor();
    expect(await text('#mint-status')).toMatch(/^Minted with servicea: kid \S+ \(RS256\)/);
    expect(await text('#mint-result')).toContain('audience_invalid');
    await shot('mint');
  });

  it('asks before a keyId the factory does not have creates a key: a typo is offered its likely keyId, a new keyId is created only when confirmed', async () => {
    await page.selectOption('#mint-variant', '');
    const keyIds = async () => (await request(f.app).get('/utils/keys').expect(200)).body as string[];
    expect(await page.locator('#keyid-list option').evaluateAll((els) => els.map((e) => (e as HTMLOptionElement).value).sort())).toEqual(['fresh', 'servicea', 'serviceb']);
    await page.fill('#mint-keyid', 'servicae');
    await page.click('#mint-submit');
    await page.locator('#mint-new-key').waitFor();
    expect(await text('#mint-new-key-text')).toBe('This factory has no keyId "servicae": minting creates a new key pair for it. Did you mean "servicea"?');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('mint-suggested');
    expect(await keyIds()).not.toContain('servicae');
    await shot('mint-new-key');
    await page.keyboard.press('Enter');
    await page.locator('#mint-status .verdict.ok', { hasText: 'Minted with servicea' }).waitFor();
    expect(await page.inputValue('#mint-keyid')).toBe('servicea');
    expect(await page.isHidden('#mint-new-key')).toBe(true);

    await page.fill('#mint-keyid', 'payments');
    await page.click('#mint-submit');
    await page.locator('#mint-new-key').waitFor();
    expect(await text('#mint-new-key-text')).toBe('This factory has no keyId "payments": minting creates a new key pair for it (it has fresh, servicea, serviceb).');
    expect(await page.isHidden('#mint-suggested')).toBe(true);
    await page.click('#mint-cancel');
    expect(await text('#mint-status')).toContain('Nothing minted');
    expect(await keyIds()).not.toContain('payments');
    await page.click('#mint-submit');
    await page.click('#mint-create');
    await page.locator('#mint-status .verdict.ok', { hasText: 'Minted with payments' }).waitFor();
    expect(await keyIds()).toContain('payments');
    await page.fill('#mint-keyid', 'servicea');
  });

  it('shows the factory refusing a lifetime past MAX_TOKEN_TTL', async () => {
    await page.selectOption('#mint-variant', '');
    await page.fill('#mint-keyid', 'bad key');
    expect(await page.$eval('#mint-keyid', (el) => (el as HTMLInputElement).validity.valid)).toBe(false);
    await page.fill('#mint-keyid', 'servicea');
    await page.fill('#mint-ttl', '99999999');
    await page.click('#mint-submit');
    await page.locator('#mint-status .verdict.bad', { hasText: 'invalid_ttl' }).waitFor();
    await page.fill('#mint-ttl', '3600');
  });
});

describe('the Mesh panel', () => {
  it("evaluates the suite's k8s/istio rules: allowed, refused by jwt_authn, refused by ALLOW, with the deciding stage highlighted", async () => {
    await page.click('#tab-mesh');
    await page.fill('#mesh-token', await issue('servicea', { aud: 'serviceb' }));
    await page.click('#mesh-submit');
    await page.locator('#mesh-status .verdict.ok').waitFor();
    expect(await page.getAttribute('.stage.decided', 'data-stage')).toBe('ALLOW');

    await page.fill('#mesh-token', '');
    await page.click('#mesh-submit');
    await page.locator('#mesh-status .verdict.bad', { hasText: '403 RBAC: access denied' }).waitFor();
    expect(await page.getAttribute('.stage.decided', 'data-stage')).toBe('ALLOW');

    await page.fill('#mesh-token', await issue('servicea', { aud: 'serviceb' }, '?expired=1'));
    await page.click('#mesh-submit');
    await page.locator('#mesh-status .verdict.bad', { hasText: '401 Jwt is expired' }).waitFor();
    expect(await page.getAttribute('.stage.decided', 'data-stage')).toBe('jwt_authn');
    expect(await page.locator('.stage.skipped').count()).toBe(3);
    expect(await text('#mesh-steps')).toContain('Envoy allows 60 s of skew');
    await shot('mesh', true);
  });

  it("gives each rule the factory's keys its jwksUri names: a token of a key the rule does not trust is refused, as in the cluster", async () => {
    // serviceb's rule names /keys/servicea,oidc/jwks.json: a token signed with serviceb's key, sub forged to servicea.
    await page.fill('#mesh-token', await issue('serviceb', { aud: 'serviceb', sub: 'servicea' }));
    await page.click('#mesh-submit');
    await page.locator('#mesh-status .verdict.bad', { hasText: "401 Jwks doesn't have key to match kid or alg from Jwt" }).waitFor();
    expect(await page.getAttribute('.stage.decided', 'data-stage')).toBe('jwt_authn');
  });

  it('says why every token fails when the rules get no keys, and offers the factory\'s own JWKS for its issuer', async () => {
    await page.fill('#mesh-token', await issue('servicea', { aud: 'serviceb' }));
    await page.check('input[name="mesh-keys"][value="none"]');
    await page.click('#mesh-submit');
    await page.locator('#mesh-status .verdict.bad', { hasText: '401 Jwt verification fails' }).waitFor();
    expect(await text('#mesh-no-keys')).toContain('The rules name their keys by jwksUri, a cluster host this factory does not fetch');
    expect(await text('#mesh-no-keys')).toContain("Give the rules of issuer https://jwt-factory/ this factory's own JWKS");
    await shot('mesh-no-keys', true);
    await page.focus('#mesh-use-factory');
    await page.keyboard.press('Enter');
    await page.locator('#mesh-status .verdict.ok').waitFor();
    expect(await page.isChecked('input[name="mesh-keys"][value="factory"]')).toBe(true);
    expect(await page.locator('#mesh-no-keys').count()).toBe(0);

    // This factory runs with MESH_FETCH_JWKS off: asking it to fetch is refused, and said so.
    await page.check('input[name="mesh-keys"][value="fetch"]');
    await page.click('#mesh-submit');
    await page.locator('#mesh-status .verdict.bad', { hasText: 'This factory does not fetch jwksUri (MESH_FETCH_JWKS is off)' }).waitFor();
    expect(await text('#mesh-status')).toContain('403 jwks_fetch_disabled');
    await page.click('#mesh-use-factory');
    await page.locator('#mesh-status .verdict.ok').waitFor();
  });

  it('models the Istio release asked for, names a release it does not model, and draws a filter order the answer names', async () => {
    await page.fill('#mesh-istio', '1.24');
    await page.click('#mesh-submit');
    await page.locator('#mesh-release', { hasText: 'Istio release modelled: 1.24' }).waitFor();
    await page.fill('#mesh-istio', '0.9');
    await page.click('#mesh-submit');
    await page.locator('#mesh-status .verdict.bad', { hasText: 'The request could not be evaluated' }).waitFor();
    expect(await text('#mesh-status')).toContain('field istioVersion');
    expect(await page.getAttribute('#mesh-istio', 'aria-invalid')).toBe('true');
    await page.fill('#mesh-istio', '');
    // The engine answers no filter order of its own: the drawing follows one when an answer names it.
    await page.route('**/mesh/evaluate', async (route) => {
      const real = await route.fetch();
      await route.fulfill({ response: real, json: { ...(await real.json()), filterChain: ['jwt_authn', 'CUSTOM', 'DENY', 'ALLOW'] } });
    });
    await page.fill('#mesh-token', await issue('servicea', { aud: 'serviceb' }, '?expired=1'));
    await page.click('#mesh-submit');
    await page.locator('#mesh-status .verdict.bad', { hasText: '401 Jwt is expired' }).waitFor();
    expect(await page.getAttribute('#mesh-istio', 'aria-invalid')).toBeNull();
    expect(await page.locator('.stage').evaluateAll((els) => els.map((e) => e.getAttribute('data-stage')))).toEqual(['jwt_authn', 'CUSTOM', 'DENY', 'ALLOW', 'upstream']);
    expect(await page.getAttribute('.stage.decided', 'data-stage')).toBe('jwt_authn');
    await page.unroute('**/mesh/evaluate');
  });

  it('names the source and the field of an invalid pasted policy', async () => {
    await page.check('input[name="mesh-source"][value="pasted"]');
    await page.fill('#mesh-yaml', 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: p, namespace: jwt-suite }\nspec:\n  rules:\n    - to:\n        - operation: { path: ["/x"] }\n');
    await page.click('#mesh-submit');
    await page.locator('#mesh-status .verdict.bad', { hasText: 'Invalid policy' }).waitFor();
    const message = await text('#mesh-status');
    expect(message).toContain('Invalid policy');
    expect(message).toContain('400 invalid_policy');
    expect(message).toContain('yaml (AuthorizationPolicy p), field spec.rules[0].to[0].operation');
    expect(await page.getAttribute('#mesh-yaml', 'aria-invalid')).toBe('true');
    await page.check('input[name="mesh-source"][value="suite"]');
  });
});

describe('the Keys panel', () => {
  it('draws every keyId on a time axis and says where a token signed now meets a sidecar that has not refetched', async () => {
    await page.click('#tab-keys');
    await page.locator('section.key[data-keyid="fresh"]').waitFor();
    expect(await page.locator('section.key').count()).toBe(4);
    expect(await text('section.key[data-keyid="fresh"] .verdict.bad')).toContain("A token signed now may be refused by a sidecar that has not refetched: 401 Jwks doesn't have key to match kid or alg from Jwt");
    expect(await text('section.key[data-keyid="servicea"] .verdict.ok')).toContain('A token signed now verifies at every sidecar');
    const serviceb = await page.locator('section.key[data-keyid="serviceb"] tbody tr').allInnerTexts();
    expect(serviceb.map((row) => row.split('\t')[1])).toEqual(['published', 'signing']);
    expect(await page.getAttribute('section.key[data-keyid="serviceb"] svg', 'aria-label')).toMatch(/^serviceb: \S+ published, \S+ signing$/);
    // ROTATION_INTERVAL is 0 (off) in this factory: no schedule to show.
    expect(await text('section.key[data-keyid="serviceb"] p.hint')).toBe('Rotation: on request only (POST /keys/<keyId>/rotate?publishAhead=1200, or jwt rotate).');
    await shot('keys', true);
    // The fresh key entered the JWKS seconds ago: at risk whatever the interval.
    await page.fill('#keys-refresh', '1');
    await page.keyboard.press('Enter');
    await page.locator('section.key[data-keyid="fresh"] .verdict.bad').waitFor();
  });
});

describe('the Login panel', () => {
  it('says so when the factory runs without an OpenID provider', async () => {
    await page.click('#tab-login');
    expect(await page.inputValue('#login-redirect')).toBe(`${base}/console/`);
    await page.click('#login-start');
    await page.locator('#login-status .verdict.warn').waitFor();
    expect(await text('#login-status')).toContain('This factory runs without an OpenID provider');
    await shot('login');
  });

  it('saw no script error and no CSP violation in any panel', () => {
    expect(problems.filter((p) => !p.startsWith('Failed to load resource'))).toEqual([]);
  });
});
