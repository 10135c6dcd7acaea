import { createServer, type Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import { SignJWT } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../app/app.js';
import { loadServiceConfig } from '../../app/config.js';
import { createPeerKeys, type PeerKeys } from '../../app/peerkeys.js';
import { createSelfKeyStore, signSelfToken } from '../../app/selfkeys.js';
import { createHttpClient } from '../../lib/httpclient.js';
import { silentLogger } from '../../lib/logger.js';
import { listen } from '../../lib/server.js';

const T0 = 1_800_000_000;
const secret = new TextEncoder().encode('caching-test-stand-in-factory-secret');

let tmp: string;
let standIn: Server;
let standInUrl: string;
/** What the stand-in factory and receiver saw: issuance calls (expired or not) and presented tokens. */
const seen = { issued: [] as boolean[], presented: [] as string[] };
const clock = { s: T0 };

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'caching-'));
  // A stand-in for the factory (POST /issueToken/servicea) and for serviceb (GET /scenario1-server),
  // on a real port: servicea's outbound client talks HTTP to it.
  const app = express();
  app.use(express.json());
  app.post('/issueToken/servicea', async (req, res) => {
    const expired = req.query.expired === '1';
    seen.issued.push(expired);
    const exp = expired ? clock.s - 3600 : clock.s + 3600;
    const token = await new SignJWT({ ...req.body, n: seen.issued.length }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(exp - 3600).setExpirationTime(exp).sign(secret);
    res.type('text/plain').send(token);
  });
  app.get('/scenario1-server', (req, res) => {
    seen.presented.push(req.get('authorization')!.slice('Bearer '.length));
    res.json({ valid: true, claims: {} });
  });
  standIn = createServer(app);
  standInUrl = `http://127.0.0.1:${await listen(standIn, 0, '127.0.0.1')}`;
});
afterAll(async () => {
  await new Promise((resolve) => standIn.close(resolve));
  await rm(tmp, { recursive: true, force: true });
});

describe('servicea reuses the factory tokens it obtains', () => {
  it('asks the factory once per audience until exp minus 60 s, and always afresh for ?expired=1, which it never keeps', async () => {
    const config = loadServiceConfig('servicea', { FACTORY_URL: standInUrl, SERVICEB_URL: standInUrl, SERVICE_KEYS_DIR: path.join(tmp, 'a') });
    const client = createHttpClient({ timeoutMs: 2000 });
    const peerKeys = createPeerKeys({ source: 'dir', dir: path.join(tmp, 'none'), jwksBaseUrl: '', client, now: () => new Date() });
    const app = createApp({ config, logger: silentLogger(), client, selfKeys: createSelfKeyStore(path.join(tmp, 'a')), peerKeys, now: () => new Date(clock.s * 1000) });
    try {
      for (const path of ['/scenario1', '/scenario1', '/scenario1?expired=1', '/scenario1?expired=1', '/scenario1']) {
        const res = await request(app).get(path);
        expect(res.status).toBe(200);
        expect(res.type).toBe('application/json');
        expect(res.body.serviceb).toMatchObject({ status: 200, valid: true });
      }
      expect(seen.issued).toEqual([false, true, true]);
      const [first, second, expired1, expired2, third] = seen.presented;
      expect(second).toBe(first);
      expect(third).toBe(first);
      expect(new Set([first, expired1, expired2]).size).toBe(3);

      clock.s = T0 + 3600 - 61;
      await request(app).get('/scenario1').expect(200);
      expect(seen.issued).toEqual([false, true, true]);
      clock.s = T0 + 3600 - 60;
      await request(app).get('/scenario1').expect(200);
      expect(seen.issued).toEqual([false, true, true, false]);
      expect(seen.presented.at(-1)).not.toBe(first);
    } finally {
      client.close();
    }
  });
});

describe('serviceb remembers successful local verifications', () => {
  let key: Awaited<ReturnType<ReturnType<typeof createSelfKeyStore>['ensure']>>['key'];
  let counted: PeerKeys & { calls: number };
  const bApp = (env: Record<string, string> = {}) => {
    const client = createHttpClient({ timeoutMs: 100 });
    const real = createPeerKeys({ source: 'dir', dir: path.join(tmp, 'b-self'), jwksBaseUrl: '', client, now: () => new Date() });
    counted = { calls: 0, keys: (options) => ((counted.calls += 1), real.keys(options)) };
    return createApp({ config: loadServiceConfig('serviceb', env), logger: silentLogger(), client, peerKeys: counted, now: () => new Date(clock.s * 1000) });
  };
  beforeAll(async () => {
    ({ key } = await createSelfKeyStore(path.join(tmp, 'b-self')).ensure());
  });
  const token = (ttlSeconds: number) =>
    signSelfToken(key, { issuer: 'https://servicea/', audience: 'serviceb', subject: 'servicea', ttlSeconds, now: new Date(T0 * 1000) }).then((t) => t.token);

  it('answers the same token from memory until exp + CLOCK_TOLERANCE, then verifies it again and refuses it as expired', async () => {
    clock.s = T0;
    const app = bApp();
    const t = await token(300);
    const first = await request(app).get('/scenario3-server').set('authorization', `Bearer ${t}`);
    expect(first.status).toBe(200);
    expect(first.type).toBe('application/json');
    expect(counted.calls).toBe(1);
    clock.s = T0 + 300 + 59;
    const again = await request(app).get('/scenario4-server').set('authorization', `Bearer ${t}`);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(counted.calls).toBe(1);
    clock.s = T0 + 300 + 60;
    const late = await request(app).get('/scenario3-server').set('authorization', `Bearer ${t}`);
    expect(late.status).toBe(403);
    expect(late.body).toMatchObject({ valid: false, error: { name: 'TokenExpiredError', code: 'expired' } });
    expect(counted.calls).toBe(2);
  });

  it('never remembers a refusal, and with VERIFY_CACHE_SIZE=0 verifies every call', async () => {
    clock.s = T0;
    const app = bApp();
    const wrongAudience = (await signSelfToken(key, { issuer: 'https://servicea/', audience: 'servicec', subject: 'servicea', ttlSeconds: 300, now: new Date(T0 * 1000) })).token;
    for (let i = 0; i < 2; i += 1) {
      const res = await request(app).get('/scenario3-server').set('authorization', `Bearer ${wrongAudience}`);
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('audience_invalid');
    }
    expect(counted.calls).toBe(2);
    const off = bApp({ VERIFY_CACHE_SIZE: '0' });
    const t = await token(300);
    for (let i = 0; i < 2; i += 1) await request(off).get('/scenario3-server').set('authorization', `Bearer ${t}`).expect(200);
    expect(counted.calls).toBe(2);
  });
});
