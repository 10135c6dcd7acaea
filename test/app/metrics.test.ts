import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../app/app.js';
import { loadServiceConfig } from '../../app/config.js';
import { createPeerKeys } from '../../app/peerkeys.js';
import { createSelfKeyStore, signSelfToken } from '../../app/selfkeys.js';
import { createHttpClient } from '../../lib/httpclient.js';
import { silentLogger } from '../../lib/logger.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'service-metrics-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('a service\'s GET /metrics', () => {
  it('counts the tokens its receivers checked by how and outcome, and refusals by reason, in a registry of its own', async () => {
    const dir = path.join(tmp, 'keys');
    const { key } = await createSelfKeyStore(dir).ensure();
    const client = createHttpClient({ timeoutMs: 100 });
    const config = loadServiceConfig('servicec', {});
    const app = () => createApp({ config, logger: silentLogger(), client, peerKeys: createPeerKeys({ source: 'dir', dir, jwksBaseUrl: '', client, now: () => new Date() }), now: () => new Date() });
    const c = app();
    const sign = async (expired: boolean) => (await signSelfToken(key, { issuer: config.selfIssuer, audience: 'servicec', subject: 'servicea', ttlSeconds: 300, now: new Date(), expired })).token;
    await request(c).get('/scenario3-server').set('authorization', `Bearer ${await sign(false)}`).expect(200);
    await request(c).get('/scenario3-server').set('authorization', `Bearer ${await sign(true)}`).expect(403);
    await request(c).get('/scenario3-server').expect(401);
    const res = await request(c).get('/metrics').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.text).toContain('service_tokens_received_total{verified_by="self",outcome="valid",service="servicec"} 1');
    expect(res.text).toContain('service_tokens_received_total{verified_by="self",outcome="invalid",service="servicec"} 1');
    expect(res.text).toContain('service_tokens_received_total{verified_by="self",outcome="missing",service="servicec"} 1');
    expect(res.text).toMatch(/^service_verification_failures_total\{reason="[A-Za-z_]+",service="servicec"\} 1$/m);
    expect(res.text).toMatch(/^process_cpu_seconds_total\{service="servicec"\} /m);
    expect((await request(app()).get('/metrics').expect(200)).text).not.toContain('outcome="valid"');
    client.close();
  });
});
