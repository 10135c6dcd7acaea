import { promises as fs, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseDotenv } from 'dotenv';
import request from 'supertest';
import { loadServiceConfig, assertServiceName } from '../../app/config.js';
import { createSelfKeyStore, signSelfToken } from '../../app/selfkeys.js';
import { createPeerKeys } from '../../app/peerkeys.js';
import { verifySelfSigned, verifyWithFactory } from '../../app/verify.js';
import { createApp } from '../../app/app.js';
import { createHttpClient } from '../../lib/httpclient.js';
import { silentLogger } from '../../lib/logger.js';
import { ROOT } from '../helpers/process.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'service-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

const envFile = (service: string) => parseDotenv(readFileSync(path.join(ROOT, 'app', `.${service}.env`)));

describe('loadServiceConfig', () => {
  it('reads the committed .env files: HTTP 3000/3001/3002, HTTPS only on serviceb 8443 and servicec 9443', () => {
    const [a, b, c] = (['servicea', 'serviceb', 'servicec'] as const).map((s) => loadServiceConfig(s, envFile(s)));
    expect([a!.port, b!.port, c!.port]).toEqual([3000, 3001, 3002]);
    expect([a!.httpsPort, b!.httpsPort, c!.httpsPort]).toEqual([undefined, 8443, 9443]);
    expect(b!.httpsUrls).toEqual({ serviceb: 'https://localhost:8443', servicec: 'https://localhost:9443' });
  });

  it('uses the documented defaults when nothing is set, and an empty HTTPS_PORT means no HTTPS', () => {
    const config = loadServiceConfig('serviceb', { HTTPS_PORT: '' });
    expect(config).toMatchObject({ port: 3001, httpsPort: undefined, factoryUrl: 'http://localhost:5555', issuer: 'https://jwt-factory/', peerKeysSource: 'jwks', upstreamTimeoutMs: 3000, clockTolerance: 60 });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('names the variable of a bad setting', () => {
    expect(() => loadServiceConfig('servicea', { PEER_KEYS_SOURCE: 'ftp' })).toThrow(/PEER_KEYS_SOURCE/);
    expect(() => loadServiceConfig('servicea', { FACTORY_URL: 'not a url' })).toThrow(/FACTORY_URL/);
    expect(() => assertServiceName('serviced')).toThrow(/servicea, serviceb, servicec/);
  });
});

describe('servicea self-signing key and a receiver reading the shared folder', () => {
  it('never replaces an existing key: a second store on the same folder returns it', async () => {
    const dir = path.join(tmp, 'self');
    const first = await createSelfKeyStore(dir).ensure();
    const second = await createSelfKeyStore(dir).ensure();
    expect(first.created).toBe(true);
    expect(second).toMatchObject({ created: false, key: { kid: first.key.kid } });
    expect((await fs.stat(path.join(dir, 'private.pem'))).mode & 0o777).toBe(0o600);
    const published = JSON.parse(await fs.readFile(path.join(dir, 'jwks.json'), 'utf8'));
    expect(published.keys.map((k: { kid: string }) => k.kid)).toEqual([first.key.kid]);
    expect(JSON.stringify(published)).not.toContain('"d"');
  });

  it('a receiver with PEER_KEYS_SOURCE=dir accepts a fresh token and refuses an expired one', async () => {
    const dir = path.join(tmp, 'self');
    const { key } = await createSelfKeyStore(dir).ensure();
    const client = createHttpClient({ timeoutMs: 100 });
    const peerKeys = createPeerKeys({ source: 'dir', dir, jwksBaseUrl: 'http://127.0.0.1:1', client, now: () => new Date() });
    const now = new Date();
    const sign = (expired: boolean) => signSelfToken(key, { issuer: 'https://servicea/', audience: 'servicec', subject: 'servicea', ttlSeconds: 300, now, expired });
    const options = { issuer: 'https://servicea/', audience: 'servicec', now };
    expect(await verifySelfSigned(peerKeys, (await sign(false)).token, options)).toMatchObject({ valid: true, claims: { aud: 'servicec' } });
    expect(await verifySelfSigned(peerKeys, (await sign(true)).token, options)).toMatchObject({ valid: false, error: { name: 'TokenExpiredError' } });
    client.close();
  });
});

describe('createApp', () => {
  const deps = () => {
    const config = loadServiceConfig('serviceb', {});
    const client = createHttpClient({ timeoutMs: 100 });
    return { config, logger: silentLogger(), client, peerKeys: createPeerKeys({ source: 'dir', dir: path.join(tmp, 'none'), jwksBaseUrl: '', client, now: () => new Date() }), now: () => new Date() };
  };

  it('GET /hello names the service', async () => {
    const res = await request(createApp(deps())).get('/hello');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ service: 'serviceb', message: 'Hello from serviceb' });
  });

  it('serves the scenario routes only on servicea (the one with a key pair)', async () => {
    const res = await request(createApp(deps())).get('/scenario1');
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('route_not_found');
  });

  it('a token whose kid is unknown is refused with 403 unknown_kid when servicea published no key', async () => {
    const { key } = await createSelfKeyStore(path.join(tmp, 'self')).ensure();
    const { token } = await signSelfToken(key, { issuer: 'https://servicea/', audience: 'serviceb', subject: 'servicea', ttlSeconds: 60, now: new Date() });
    const res = await request(createApp(deps())).get('/scenario3-server').set('authorization', `Bearer ${token}`);
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ valid: false, error: { code: 'unknown_kid' } });
  });
});

describe('verifyWithFactory', () => {
  it('refuses an oversized token before it travels to the factory', async () => {
    const client = { request: () => Promise.reject(new Error('the factory must not be called')), close: () => undefined };
    const verdict = await verifyWithFactory(client, 'http://127.0.0.1:1', `${'a'.repeat(9000)}.b.c`, 'serviceb', 'https://jwt-factory/');
    expect(verdict).toMatchObject({ valid: false, error: { name: 'JsonWebTokenError', code: 'too_large' } });
  });
});

describe('createPeerKeys', () => {
  it('keeps only asymmetric public signing keys from a published JWKS', async () => {
    const dir = path.join(tmp, 'mixed');
    const { key } = await createSelfKeyStore(path.join(tmp, 'self')).ensure();
    const jwks = {
      keys: [
        key.publicJwk,
        { kty: 'oct', k: 'c2VjcmV0', kid: 'hmac', alg: 'HS256' },
        { ...key.publicJwk, kid: 'enc', use: 'enc' },
        { ...key.publicJwk, kid: 'no-alg', alg: undefined },
      ],
    };
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'jwks.json'), JSON.stringify(jwks));
    const client = createHttpClient({ timeoutMs: 100 });
    const keys = await createPeerKeys({ source: 'dir', dir, jwksBaseUrl: '', client, now: () => new Date() }).keys();
    expect(keys.map((k) => [k.kid, k.alg])).toEqual([[key.kid, 'ES256']]);
    client.close();
  });
});
