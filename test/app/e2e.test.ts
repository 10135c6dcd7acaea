import http from 'node:http';
import https from 'node:https';
import { promises as fs } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, importPKCS8 } from 'jose';
import { ensureCertificates, loadServerTls } from '../../lib/certs.js';
import { freePort, startProcess, type Started } from '../helpers/process.js';

/**
 * End-to-end: the real factory and servicea/serviceb/servicec as processes on free ports, plus
 * a second servicea ("broken A") whose dependencies are fakes run by this test: a factory that
 * answers garbage or hangs on demand, a serviceb whose certificate comes from a foreign CA,
 * and a serviceb port where nothing listens.
 */

let tmp: string;
let factory: Started;
let a: Started;
let b: Started;
let c: Started;
let brokenA: Started;
let fakeFactory: http.Server;
let foreignB: https.Server;
let fakeMode: 'ok' | 'garbage' | 'hang' = 'ok';
const ports = { a: 0, b: 0, bHttps: 0, c: 0, cHttps: 0 };

const url = (s: Started, p = '') => `http://127.0.0.1:${s.port}${p}`;

async function call(target: string, init: RequestInit = {}) {
  const res = await fetch(target, init);
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, type: res.headers.get('content-type') ?? '', headers: res.headers, body };
}

const listenOn = (server: http.Server | https.Server) =>
  new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'app-e2e-'));
  const certsDir = path.join(tmp, 'certs');
  const foreignDir = path.join(tmp, 'foreign-certs');
  const [, , factoryStarted] = await Promise.all([
    ensureCertificates(certsDir, { services: ['servicea', 'serviceb', 'servicec'] }),
    // A second CA issuing a certificate with the right names: only the issuer is wrong.
    ensureCertificates(foreignDir, { services: ['serviceb'] }),
    startProcess('jwt-factory/main.ts', { env: { PORT: '0', HOST: '127.0.0.1', KEYS_DIR: path.join(tmp, 'factory-keys'), ISSUER: 'https://jwt-factory/' } }),
  ]);
  factory = factoryStarted;
  for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();

  fakeFactory = http.createServer((_req, res) => {
    if (fakeMode === 'hang') return; // never answers
    if (fakeMode === 'garbage') res.writeHead(200, { 'content-type': 'text/html' }).end('<html>oops</html>');
    else res.writeHead(200, { 'content-type': 'text/plain' }).end('eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln');
  });
  const foreign = await loadServerTls(foreignDir, 'serviceb');
  foreignB = https.createServer({ cert: foreign.cert, key: foreign.key }, (_req, res) => res.end('{"valid":true,"claims":{}}'));
  const [fakeFactoryPort, foreignPort, closedPort] = await Promise.all([listenOn(fakeFactory), listenOn(foreignB), freePort()]);

  const common = {
    HOST: '127.0.0.1',
    CERTS_DIR: certsDir,
    FACTORY_URL: url(factory),
    ISSUER: 'https://jwt-factory/',
    SERVICEA_URL: `http://127.0.0.1:${ports.a}`,
    SERVICEB_URL: `http://127.0.0.1:${ports.b}`,
    SERVICEC_URL: `http://127.0.0.1:${ports.c}`,
    SERVICEB_HTTPS_URL: `https://127.0.0.1:${ports.bHttps}`,
    SERVICEC_HTTPS_URL: `https://127.0.0.1:${ports.cHttps}`,
    SERVICE_KEYS_DIR: path.join(tmp, 'servicea-self'),
    PEER_KEYS_DIR: path.join(tmp, 'servicea-self'),
    PEER_KEYS_SOURCE: 'jwks',
    SELF_ISSUER: 'https://servicea/',
  };
  [a, b, c, brokenA] = await Promise.all([
    startProcess('app/main.ts', { args: ['servicea'], env: { ...common, PORT: String(ports.a), HTTPS_PORT: '' } }),
    startProcess('app/main.ts', { args: ['serviceb'], env: { ...common, PORT: String(ports.b), HTTPS_PORT: String(ports.bHttps) } }),
    // servicec reads servicea's key from the shared folder instead of its JWKS.
    startProcess('app/main.ts', { args: ['servicec'], env: { ...common, PORT: String(ports.c), HTTPS_PORT: String(ports.cHttps), PEER_KEYS_SOURCE: 'dir' } }),
    startProcess('app/main.ts', {
      args: ['servicea'],
      env: {
        ...common,
        PORT: '0',
        HTTPS_PORT: '',
        SERVICE_KEYS_DIR: path.join(tmp, 'broken-self'),
        FACTORY_URL: `http://127.0.0.1:${fakeFactoryPort}`,
        SERVICEB_URL: `http://127.0.0.1:${closedPort}`,
        SERVICEB_HTTPS_URL: `https://127.0.0.1:${foreignPort}`,
        UPSTREAM_TIMEOUT_MS: '500',
      },
    }),
  ]);
});

afterAll(async () => {
  await Promise.all([factory, a, b, c, brokenA].filter(Boolean).map((p) => p.stop()));
  fakeFactory?.closeAllConnections();
  foreignB?.closeAllConnections();
  await Promise.all([fakeFactory, foreignB].filter(Boolean).map((s) => new Promise((r) => s.close(r))));
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('servicea key pair', () => {
  it('POST /gen-keys creates the key pair once, private key mode 0600, and later calls return the same key', async () => {
    const first = await call(url(a, '/gen-keys'), { method: 'POST' });
    expect(first.status).toBe(201);
    expect(first.type).toMatch(/application\/json/);
    expect(first.body).toMatchObject({ created: true, alg: 'ES256' });
    const stat = await fs.stat(path.join(tmp, 'servicea-self', 'private.pem'));
    expect(stat.mode & 0o777).toBe(0o600);
    const again = await call(url(a, '/gen-keys'), { method: 'POST' });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ created: false, kid: first.body.kid });
  });

  it('GET /.well-known/jwks.json publishes only the public members of that key', async () => {
    const res = await call(url(a, '/.well-known/jwks.json'));
    expect(res.status).toBe(200);
    expect(res.body.keys).toHaveLength(1);
    const [jwk] = res.body.keys;
    expect(Object.keys(jwk).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
  });
});

const valid = (aud: string) => ({ status: 200, valid: true, claims: expect.objectContaining({ sub: 'servicea', aud }) });
const expired = { status: 403, valid: false, error: expect.objectContaining({ name: 'TokenExpiredError', expiredAt: expect.any(String) }), claims: {} };

describe('the eight scenario outcomes', () => {
  it.each([
    ['/scenario1', { serviceb: valid('serviceb') }],
    ['/scenario1?expired=1', { serviceb: expired }],
    ['/scenario2', { serviceb: valid('serviceb'), servicec: valid('servicec') }],
    ['/scenario2?expired=1', { serviceb: valid('serviceb'), servicec: expired }],
    ['/scenario3', { serviceb: valid('serviceb') }],
    ['/scenario3?expired=1', { serviceb: expired }],
    ['/scenario4', { serviceb: valid('serviceb'), servicec: valid('servicec') }],
    ['/scenario4?expired=1', { serviceb: valid('serviceb'), servicec: expired }],
  ])('GET %s answers each receiver verdict', async (route, expected) => {
    const res = await call(url(a, route));
    expect(res.status).toBe(200);
    expect(res.type).toMatch(/application\/json/);
    expect(res.body).toEqual(expected);
  });

  it('self-signed tokens carry servicea issuer and the factory tokens the factory issuer', async () => {
    const self = await call(url(a, '/scenario3'));
    expect(self.body.serviceb.claims.iss).toBe('https://servicea/');
    const minted = await call(url(a, '/scenario1'));
    expect(minted.body.serviceb.claims.iss).toBe('https://jwt-factory/');
  });
});

/** A token the factory issues for servicea with the given audience. */
async function factoryToken(aud: string, claims: Record<string, string> = {}): Promise<string> {
  const res = await fetch(url(factory, '/issueToken/servicea'), {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/plain' },
    body: JSON.stringify({ sub: 'servicea', aud, ...claims }),
  });
  expect(res.status).toBe(200);
  return (await res.text()).trim();
}

/** A token signed with servicea's own key (read from its folder) for the given audience. */
async function selfToken(aud: string, issuer = 'https://servicea/'): Promise<string> {
  const jwks = (await call(url(a, '/.well-known/jwks.json'))).body;
  const key = await importPKCS8(await fs.readFile(path.join(tmp, 'servicea-self', 'private.pem'), 'utf8'), 'ES256');
  return new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: jwks.keys[0].kid }).setIssuer(issuer).setSubject('servicea').setAudience(aud).setJti(randomUUID()).setIssuedAt().setExpirationTime('2m').sign(key);
}

describe('the -server routes of serviceb', () => {
  const routes = [
    { n: 1, mint: factoryToken },
    { n: 2, mint: factoryToken },
    { n: 3, mint: (aud: string) => selfToken(aud) },
    { n: 4, mint: (aud: string) => selfToken(aud) },
  ];

  it.each(routes)('GET /scenario$n-server without a token answers 401 with WWW-Authenticate: Bearer', async ({ n }) => {
    const res = await call(url(b, `/scenario${n}-server`));
    expect(res.status).toBe(401);
    expect(res.type).toMatch(/application\/json/);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
    expect(res.body.error.code).toBe('token_missing');
  });

  it.each(routes)('GET /scenario$n-server with a token for another audience answers 403 with the reason', async ({ n, mint }) => {
    const res = await call(url(b, `/scenario${n}-server`), { headers: { authorization: `Bearer ${await mint('servicec')}` } });
    expect(res.status).toBe(403);
    expect(res.type).toMatch(/application\/json/);
    expect(res.body).toMatchObject({ valid: false, claims: {}, error: { name: 'JsonWebTokenError', code: 'audience_invalid' } });
  });

  it.each(routes)('GET /scenario$n-server with a good token answers 200 with the claims', async ({ n, mint }) => {
    const res = await call(url(b, `/scenario${n}-server`), { headers: { authorization: `Bearer ${await mint('serviceb')}` } });
    expect(res.status).toBe(200);
    expect(res.type).toMatch(/application\/json/);
    expect(res.body).toMatchObject({ valid: true, claims: { sub: 'servicea', aud: 'serviceb' } });
  });

  it('GET /scenario3-server refuses a token signed by servicea key under another issuer', async () => {
    const res = await call(url(b, '/scenario3-server'), { headers: { authorization: `Bearer ${await selfToken('serviceb', 'https://evil/')}` } });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('issuer_invalid');
  });

  it('GET /scenario1-server refuses a factory-signed token that names another issuer, and says expiry first when both are wrong', async () => {
    const res = await call(url(b, '/scenario1-server'), { headers: { authorization: `Bearer ${await factoryToken('serviceb', { iss: 'https://evil/' })}` } });
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ name: 'JsonWebTokenError', code: 'issuer_invalid' });
    const expired = await fetch(url(factory, '/issueToken/servicea?expired=1'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ aud: 'serviceb', iss: 'https://evil/' }),
    });
    const both = await call(url(b, '/scenario1-server'), { headers: { authorization: `Bearer ${await expired.text()}` } });
    expect(both.status).toBe(403);
    expect(both.body.error).toMatchObject({ name: 'TokenExpiredError', code: 'expired' });
  });

  it('GET /scenario1-server refuses a self-signed token (not signed by the factory key)', async () => {
    const res = await call(url(b, '/scenario1-server'), { headers: { authorization: `Bearer ${await selfToken('serviceb')}` } });
    expect(res.status).toBe(403);
    expect(res.body.valid).toBe(false);
  });

  it('serviceb serves the same routes over HTTPS with a certificate of the suite CA', async () => {
    const { ca } = await loadServerTls(path.join(tmp, 'certs'), 'serviceb');
    const status = await new Promise<number>((resolve, reject) => {
      https.get(`https://127.0.0.1:${ports.bHttps}/hello`, { ca }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on('error', reject);
    });
    expect(status).toBe(200);
  });
});

describe('logs', () => {
  it('carry the kid and jti of a presented token but never the token or a private key', async () => {
    const token = await selfToken('serviceb');
    const res = await call(url(b, '/scenario3-server'), { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const [, , signature] = token.split('.');
    // The request log line is written when the answer finishes: wait for it rather than guess.
    await expect.poll(() => b.output().includes(`"jti":"${res.body.claims.jti}"`)).toBe(true);
    for (const p of [a, b, c]) {
      expect(p.output()).not.toContain(signature);
      expect(p.output()).not.toContain('PRIVATE KEY');
    }
  });
});

describe('failures of dependencies are answers that name the dependency', () => {
  it('a serviceb certificate not signed by the suite CA is refused: 502 dependency_untrusted', async () => {
    expect((await call(url(brokenA, '/gen-keys'), { method: 'POST' })).status).toBe(201);
    const res = await call(url(brokenA, '/scenario3'));
    expect(res.status).toBe(502);
    expect(res.type).toMatch(/application\/json/);
    expect(res.body.error).toMatchObject({ code: 'dependency_untrusted', dependency: 'serviceb' });
  });

  it('a factory answering garbage gives 502 dependency_bad_answer naming jwt-factory', async () => {
    fakeMode = 'garbage';
    const res = await call(url(brokenA, '/scenario1'));
    expect(res.status).toBe(502);
    expect(res.body.error).toMatchObject({ code: 'dependency_bad_answer', dependency: 'jwt-factory' });
  });

  it('a factory that never answers gives 504 dependency_timeout naming jwt-factory', async () => {
    fakeMode = 'hang';
    const res = await call(url(brokenA, '/scenario1'));
    expect(res.status).toBe(504);
    expect(res.body.error).toMatchObject({ code: 'dependency_timeout', dependency: 'jwt-factory' });
  });

  it('a serviceb that is down gives 503 dependency_down naming serviceb', async () => {
    fakeMode = 'ok';
    const res = await call(url(brokenA, '/scenario1'));
    expect(res.status).toBe(503);
    expect(res.body.error).toMatchObject({ code: 'dependency_down', dependency: 'serviceb' });
  });

  it('the service keeps serving after those failures', async () => {
    const res = await call(url(brokenA, '/hello'));
    expect(res.status).toBe(200);
    expect(res.body.service).toBe('servicea');
  });

  it('with the real factory stopped, servicea and serviceb answer 503 naming jwt-factory and keep serving', async () => {
    const token = await factoryToken('serviceb');
    await factory.stop();
    // ?expired=1 always asks the factory (servicea never keeps an expired token).
    const scenario = await call(url(a, '/scenario1?expired=1'));
    expect(scenario.status).toBe(503);
    expect(scenario.body.error).toMatchObject({ code: 'dependency_down', dependency: 'jwt-factory' });
    // A valid token servicea already holds still travels; serviceb then cannot reach the factory.
    const cached = await call(url(a, '/scenario1'));
    expect(cached.status).toBe(502);
    expect(cached.body.error).toMatchObject({ code: 'dependency_bad_answer', dependency: 'serviceb', upstream: { status: 503, code: 'dependency_down', dependency: 'jwt-factory' } });
    const receiver = await call(url(b, '/scenario1-server'), { headers: { authorization: `Bearer ${token}` } });
    expect(receiver.status).toBe(503);
    expect(receiver.body.error).toMatchObject({ code: 'dependency_down', dependency: 'jwt-factory' });
    // Scenarios that need no factory still work.
    expect((await call(url(a, '/scenario4'))).body.servicec.valid).toBe(true);
    expect((await call(url(a, '/hello'))).status).toBe(200);
  });
});
