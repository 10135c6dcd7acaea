import http from 'node:http';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import axios from 'axios';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runScript, startProcess, type Started } from '../helpers/process.js';

/** No keep-alive: every request opens a new connection, so the cluster spreads them over workers. */
const client = axios.create({ httpAgent: new http.Agent({ keepAlive: false }), validateStatus: () => true });
const base = (p: Started) => `http://127.0.0.1:${p.port}`;

let dir: string;
const env = () => ({ PORT: '0', HOST: '127.0.0.1', KEYS_DIR: dir, LOG_LEVEL: 'info' });

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'factory-e2e-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('jwt-factory as a real process', () => {
  let tokenFromFirst: string;

  it('persists keys across a restart: a token from the first process verifies in the second, which runs WORKERS=2', async () => {
    const first = await startProcess('jwt-factory/main.ts', { env: env() });
    try {
      const issued = await client.post(`${base(first)}/issueToken/persist`, { aud: 'b' });
      expect(issued.status).toBe(200);
      tokenFromFirst = issued.data as string;
      expect(((await stat(path.join(dir, 'persist.json'))).mode & 0o777)).toBe(0o600);
    } finally {
      expect(await first.stop()).toBe(0);
    }
    // Request lines carry keyId, kid and jti, never the token.
    expect(first.output()).not.toContain(tokenFromFirst);
    expect(first.output()).toMatch(/"path":"\/issueToken\/persist","status":200,[^\n]*"keyId":"persist","kid":"[\w-]{43}","jti":"[0-9a-f-]{36}"/);

    const second = await startProcess('jwt-factory/main.ts', { env: { ...env(), WORKERS: '2' } });
    try {
      expect(second.output().match(/"msg":"listening"/g)).toHaveLength(1);
      const answer = await client.post(`${base(second)}/verify/persist`, { token: tokenFromFirst, aud: 'b', sub: 'persist' });
      expect(answer.data).toMatchObject({ valid: true });

      // A key created and then rotated through one worker is used by all of them.
      const created = await client.post(`${base(second)}/keys/cluster`);
      expect(created.status).toBe(200);
      const rotated = await client.post(`${base(second)}/keys/cluster/rotate`);
      expect(rotated.data.previous[0].kid).toBe(created.data.kid);
      for (let i = 0; i < 8; i += 1) {
        const token = (await client.post(`${base(second)}/issueToken/cluster`, { aud: 'x' })).data as string;
        const verdict = await client.post(`${base(second)}/verify/cluster`, { token, aud: 'x', sub: 'cluster' });
        expect(verdict.status).toBe(200);
        const jwks = await client.get(`${base(second)}/keys/cluster/jwks.json`);
        expect(jwks.data.keys.map((k: { kid: string }) => k.kid)).toEqual([rotated.data.kid, created.data.kid]);
      }
      const pids = new Set([...second.output().matchAll(/"pid":(\d+),[^\n]*"path":"\/keys\/cluster\/jwks.json"/g)].map((m) => m[1]));
      expect(pids.size).toBe(2);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });

  it('stops start-up with one sentence naming a bad setting, exit 1', async () => {
    // Run to its end: a process that starts by mistake is stopped by the timeout, never leaked.
    const failure = await runScript('jwt-factory/main.ts', [], { env: { ...env(), TOKEN_TTL: 'soon' } });
    expect(failure.code).toBe(1);
    expect(failure.stderr).toMatch(/Invalid setting TOKEN_TTL: must be a number of seconds \(got "soon"\)/);
  });

  it('reads an optional .env (the environment wins), survives bad input, and reports a taken port in one sentence, exit 1', async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'factory-cwd-'));
    await writeFile(path.join(cwd, '.env'), 'ISSUER=https://from-dotenv/\nPORT=1\n');
    const holder = await startProcess('jwt-factory/main.ts', { env: env(), cwd });
    try {
      const discovery = await client.get(`${base(holder)}/.well-known/openid-configuration`);
      expect(discovery.data.issuer).toBe('https://from-dotenv/');

      const malformed = await client.post(`${base(holder)}/issueToken/x`, '{"aud":', { headers: { 'Content-Type': 'application/json' } });
      expect(malformed.status).toBe(400);
      expect(malformed.data.error.code).toBe('malformed_json');
      const traversal = await client.get(`${base(holder)}/keys/..%2F..%2Fetc`);
      expect(traversal.status).toBe(400);
      expect((await client.get(`${base(holder)}/healthz`)).status).toBe(200);

      const failure = await runScript('jwt-factory/main.ts', [], { env: { ...env(), PORT: String(holder.port) } });
      expect(failure.code).toBe(1);
      expect(failure.stderr).toContain(`port ${holder.port} on 127.0.0.1 is already in use`);
    } finally {
      expect(await holder.stop()).toBe(0);
      await rm(cwd, { recursive: true, force: true });
    }
  });

  it('with PORT=0 and no PUBLIC_URL names the port it got: in discovery, the OpenID endpoints, the login form and its listening line', async () => {
    const demo = path.join(process.cwd(), 'jwt-factory', 'oidc.demo.yaml');
    const factory = await startProcess('jwt-factory/main.ts', { env: { ...env(), OIDC_CONFIG: demo, OIDC_KEY_ID: 'oidc-port0' } });
    try {
      const own = base(factory);
      expect(factory.port).toBeGreaterThan(0);
      expect(factory.listening.publicUrl).toBe(own);
      const discovery = await client.get(`${own}/.well-known/openid-configuration`);
      expect(discovery.status).toBe(200);
      expect(discovery.data).toMatchObject({ jwks_uri: `${own}/.well-known/jwks.json`, authorization_endpoint: `${own}/authorize`, token_endpoint: `${own}/token` });
      expect(JSON.stringify(discovery.data)).not.toContain('127.0.0.1:0');
      expect((await client.get(discovery.data.jwks_uri)).status).toBe(200);

      const query = new URLSearchParams({ client_id: 'spa', redirect_uri: 'http://localhost:3000/spa', response_type: 'code', scope: 'openid', state: 's', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' });
      const login = await client.get(`${own}/authorize?${query}`);
      expect(login.status).toBe(200);
      expect(login.headers['content-type']).toMatch(/^text\/html/);
      expect(login.data).toContain(`action="${own}/login"`);
    } finally {
      expect(await factory.stop()).toBe(0);
    }
  });

  it('refuses a PUBLIC_URL on port 0 in one sentence, exit 1', async () => {
    const failure = await runScript('jwt-factory/main.ts', [], { env: { ...env(), PUBLIC_URL: 'http://127.0.0.1:0' } });
    expect(failure.code).toBe(1);
    expect(failure.stderr).toMatch(/Invalid setting PUBLIC_URL: must not name port 0/);
  });
});
