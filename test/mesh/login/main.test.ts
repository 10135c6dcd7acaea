import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../lib/logger.js';
import { parseLogin } from '../../../mesh/login/args.js';
import { startTestProvider, type TestProvider } from '../../helpers/oidc-provider.js';
import { freePort, runScript, startProcess, type Started } from '../../helpers/process.js';
import { send } from './send.js';

/** `mesh-gateway --login-issuer …` as a real process: the flags, the secret from the environment, the first redirect. */

let provider: TestProvider;
let dir: string;
let gateway: Started;
let port: number;

const get = (pathname: string, headers: Record<string, string>) => send(`http://127.0.0.1:${port}${pathname}`, { headers });

const SECRET = 'main-test-client-secret';

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'login-main-'));
  port = await freePort();
  provider = await startTestProvider({ clientId: 'gw', clientSecret: SECRET, redirectUris: [`http://127.0.0.1:${port}/callback`], postLogoutRedirectUris: [`http://127.0.0.1:${port}/`], accessTokenTtl: 300 });
  gateway = await startProcess('mesh/gateway-main.ts', {
    args: ['--policies', dir, '--upstream', 'http://127.0.0.1:1', '--port', String(port), '--login-issuer', provider.issuer, '--login-client-id', 'gw', '--public-url', `http://127.0.0.1:${port}`],
    env: { LOGIN_CLIENT_SECRET: SECRET },
  });
}, 30_000);

afterAll(async () => {
  await gateway?.stop();
  await provider?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('mesh-gateway in login mode', () => {
  it('sends a page to the discovered authorization endpoint and answers an API call 401 JSON', async () => {
    const page = await get('/', { accept: 'text/html' });
    expect(page.status).toBe(302);
    expect(page.headers.location).toMatch(new RegExp(`^${provider.issuer}/auth\\?`));
    const api = await get('/api/me', { accept: 'application/json' });
    expect(api.status).toBe(401);
    expect(api.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(JSON.parse(api.body).error.code).toBe('login_required');
    expect(gateway.output()).not.toContain(SECRET);
  });

  it('--help lists the login flags and says where the secret comes from', async () => {
    const res = await runScript('mesh/gateway-main.ts', ['--help']);
    expect(res.code).toBe(0);
    for (const flag of ['--login-issuer', '--login-client-id', '--public-url', '--login-claim-header', '--session-idle', 'LOGIN_CLIENT_SECRET']) expect(res.stdout).toContain(flag);
  });

  it('a login without its secret exits 2 with a sentence naming the variable', async () => {
    const res = await runScript('mesh/gateway-main.ts', ['--policies', dir, '--upstream', 'http://127.0.0.1:1', '--login-issuer', provider.issuer, '--login-client-id', 'gw', '--public-url', 'http://127.0.0.1:9']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/LOGIN_CLIENT_SECRET must be set in the environment with --login-issuer/);
  });

  it('login flags that cannot work are usage errors naming the flag', () => {
    const base = { 'login-issuer': provider.issuer, 'login-client-id': 'gw', 'public-url': 'http://127.0.0.1:9' };
    const cases: Array<[Record<string, string | string[] | undefined>, RegExp]> = [
      [{ 'login-client-id': undefined }, /--login-client-id is required/],
      [{ 'public-url': 'http://127.0.0.1:9/app' }, /--public-url must be an origin without a path/],
      [{ 'login-issuer': 'ftp://op.example' }, /--login-issuer must be an absolute http\(s\) URL/],
      [{ 'login-claim-header': ['name'] }, /--login-claim-header expects claim=header/],
      [{ 'login-claim-header': ['name=x user'] }, /--login-claim-header must be a header name/],
      [{ 'session-idle': '5' }, /--session-idle must be a whole number of seconds, at least 60/],
      [{ 'login-refresh-ahead': '2.5' }, /--login-refresh-ahead must be a whole number of seconds, at least 0/],
      [{ 'login-client-auth': 'private_key_jwt' }, /--login-client-auth must be client_secret_basic or client_secret_post/],
      [{ 'login-callback-path': 'callback' }, /--login-callback-path must be a path starting with \//],
    ];
    for (const [values, message] of cases) {
      expect(() => parseLogin({ ...base, ...values } as never, { LOGIN_CLIENT_SECRET: SECRET }, { logger: silentLogger() })).toThrow(message);
    }
    expect(parseLogin({}, {}, { logger: silentLogger() })).toBeUndefined();
  });
});
