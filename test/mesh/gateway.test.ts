import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureCertificates, loadServerTls } from '../../lib/certs.js';
import { silentLogger } from '../../lib/logger.js';
import { createGateway, type GatewayRules } from '../../mesh/gateway.js';
import { prepareSidecar } from '../../mesh/evaluate.js';
import { inputDigest } from '../../mesh/sources.js';
import { startProcess, type Started } from '../helpers/process.js';
import { loadPolicyObjects } from '../../mesh/istio/policies.js';
import { CASES, JWKS_SETS, NOW, POLICY_SETS, WORKLOAD, createCtx, type Ctx } from './cases.js';
import { assertOutcome, type Outcome } from './outcome.js';

/**
 * The table through the real gateway process, in front of an echo server that answers with
 * what it received. One gateway for the file: each policy set is written to its directory and
 * the gateway picks the edit up, as a sidecar gets istiod's new config.
 */

let ctx: Ctx;
let dir: string;
let upstream: http.Server;
let upstreamPort: number;
let gateway: Started;

function send(port: number, req: { method: string; path: string; headers?: Record<string, string | string[]> }): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, method: req.method, path: req.path, headers: req.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    r.on('error', reject);
    r.end();
  });
}

/** Waits until the gateway logs `text` after output offset `since`. */
async function waitFor(text: string, since = 0, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!gateway.output().slice(since).includes(text)) {
    if (Date.now() - start > timeoutMs) throw new Error(`gateway never logged ${text}:\n${gateway.output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Writes a policy set and its JWKS file; when the gateway runs, waits until it has loaded exactly these. */
async function load(set: string): Promise<void> {
  const since = gateway?.output().length ?? 0;
  await writeFile(path.join(dir, 'policies', 'set.json'), JSON.stringify(POLICY_SETS[set]!(ctx)));
  await writeFile(path.join(dir, 'jwks.json'), JSON.stringify(JWKS_SETS[set]?.(ctx) ?? {}));
  if (gateway) await waitFor(`"digest":"${await inputDigest(path.join(dir, 'policies'), path.join(dir, 'jwks.json'))}"`, since);
}

beforeAll(async () => {
  ctx = await createCtx();
  dir = await mkdtemp(path.join(tmpdir(), 'mesh-gateway-'));
  await mkdir(path.join(dir, 'policies'));
  upstream = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ path: req.url, headers: req.headersDistinct }));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamPort = (upstream.address() as AddressInfo).port;
  await load(CASES[0]!.set);
  gateway = await startProcess('mesh/gateway-main.ts', {
    args: [
      '--policies', path.join(dir, 'policies'),
      '--upstream', `http://127.0.0.1:${upstreamPort}`,
      '--port', '0',
      '--workload', `app=${WORKLOAD.labels.app}`,
      '--namespace', WORKLOAD.namespace,
      '--jwks-file', path.join(dir, 'jwks.json'),
      '--fetch-timeout', '1000',
      '--now', NOW.toISOString(),
    ],
  });
});

afterAll(async () => {
  await gateway?.stop();
  upstream?.closeAllConnections();
  await new Promise((resolve) => upstream?.close(resolve));
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sets = [...new Set(CASES.map((c) => c.set))];

describe('the mesh table through the gateway process', () => {
  for (const [i, set] of sets.entries()) {
    describe(`policy set ${set}`, () => {
      beforeAll(async () => {
        if (i > 0) await load(set);
      });
      for (const c of CASES.filter((x) => x.set === set)) {
        it(c.name, async () => {
          const req = await c.request(ctx);
          expect(req.query ?? req.cookies ?? req.sourcePrincipal, 'the gateway runner sends headers and paths only').toBeUndefined();
          const res = await send(gateway.port, req);
          const outcome: Outcome = { status: res.status, body: res.body, wwwAuthenticate: res.headers['www-authenticate'] as string | undefined };
          if (res.status === 200) {
            const echo = JSON.parse(res.body) as { path: string; headers: Record<string, string[]> };
            outcome.upstreamHeaders = echo.headers;
            outcome.upstreamPath = echo.path;
            outcome.body = '';
          } else {
            expect(res.headers['content-type']).toBe('text/plain');
          }
          assertOutcome(outcome, c.expect);
        });
      }
    });
  }
});

describe('gateway behaviour around the table', () => {
  it('logs each decision without the token', async () => {
    await load('require-jwt');
    const since = gateway.output().length;
    const token = await ctx.token('servicea');
    const res = await send(gateway.port, { method: 'GET', path: '/api', headers: { host: 'serviceb', authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    await waitFor('"msg":"forwarded"', since);
    expect(gateway.output()).not.toContain(token);
    expect(gateway.output()).toContain('"decidedBy":"AuthorizationPolicy ALLOW ns[jwt-suite]-policy[require-jwt]-rule[0]"');
  });

  it('a reload with a broken file keeps the previous policies', async () => {
    const since = gateway.output().length;
    await writeFile(path.join(dir, 'policies', 'set.json'), '{"kind": "AuthorizationPolicy", "apiVersion": "security.istio.io/v1", "metadata": {"name": "x"}, "spec": {"action": "MAYBE"}}');
    await waitFor('reload failed, keeping the previous policies', since);
    const res = await send(gateway.port, { method: 'GET', path: '/api', headers: { host: 'serviceb' } });
    expect(res.status).toBe(403);
    expect(res.body).toBe('RBAC: access denied');
  });

  it('an upstream that is down answers 503 as Envoy does', async () => {
    const down = createGateway({ rules: () => ({ policies: [], jwks: {} }), upstream: new URL('http://127.0.0.1:1'), logger: silentLogger() });
    await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve));
    try {
      const res = await send((down.address() as AddressInfo).port, { method: 'GET', path: '/', headers: { host: 'x' } });
      expect(res.status).toBe(503);
      expect(res.body).toBe('upstream connect error or disconnect/reset before headers. reset reason: connection failure');
    } finally {
      await new Promise((resolve) => down.close(resolve));
    }
  });

  it('an https upstream is verified: trusted with --ca, refused (503) without it', async () => {
    const certDir = path.join(dir, 'certs');
    await ensureCertificates(certDir, { services: ['serviceb'] });
    const tlsFiles = await loadServerTls(certDir, 'serviceb');
    const secure = https.createServer({ cert: tlsFiles.cert, key: tlsFiles.key }, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`secure ${req.url}`);
    });
    await new Promise<void>((resolve) => secure.listen(0, '127.0.0.1', resolve));
    const upstreamUrl = new URL(`https://127.0.0.1:${(secure.address() as AddressInfo).port}`);
    const gateways = [
      createGateway({ rules: () => ({ policies: [], jwks: {} }), upstream: upstreamUrl, ca: tlsFiles.ca, logger: silentLogger() }),
      createGateway({ rules: () => ({ policies: [], jwks: {} }), upstream: upstreamUrl, logger: silentLogger() }),
    ];
    try {
      const [trusted, untrusted] = await Promise.all(
        gateways.map(async (g) => {
          await new Promise<void>((resolve) => g.listen(0, '127.0.0.1', resolve));
          return send((g.address() as AddressInfo).port, { method: 'GET', path: '/hello', headers: { host: 'serviceb' } });
        }),
      );
      expect(trusted).toMatchObject({ status: 200, body: 'secure /hello' });
      expect(untrusted!.status).toBe(503);
    } finally {
      for (const g of gateways) await new Promise((resolve) => g.close(resolve));
      secure.closeAllConnections();
      await new Promise((resolve) => secure.close(resolve));
    }
  });

  it('rules with ports see the workload\'s cluster port from --destination-port, else the upstream\'s', async () => {
    const policies = loadPolicyObjects(
      [{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'port-3001' }, spec: { rules: [{ to: [{ operation: { ports: ['3001'] } }] }] } }],
      'ports',
    );
    const upstreamUrl = new URL(`http://127.0.0.1:${upstreamPort}`);
    const gateways = [
      createGateway({ rules: () => ({ policies, jwks: {} }), upstream: upstreamUrl, destinationPort: 3001, logger: silentLogger() }),
      createGateway({ rules: () => ({ policies, jwks: {} }), upstream: upstreamUrl, logger: silentLogger() }),
    ];
    try {
      const [mapped, unmapped] = await Promise.all(
        gateways.map(async (g) => {
          await new Promise<void>((resolve) => g.listen(0, '127.0.0.1', resolve));
          return send((g.address() as AddressInfo).port, { method: 'GET', path: '/p', headers: { host: 'serviceb' } });
        }),
      );
      expect(mapped!.status).toBe(200);
      expect(unmapped).toMatchObject({ status: 403, body: 'RBAC: access denied' });
    } finally {
      for (const g of gateways) await new Promise((resolve) => g.close(resolve));
    }
  });

  it('translates once per rules object (one reload), not per request: it enforces the translation it made first', async () => {
    const denyAll = loadPolicyObjects([{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-all' }, spec: { action: 'DENY', rules: [{}] } }], 'deny');
    const upstreamUrl = new URL(`http://127.0.0.1:${upstreamPort}`);
    const rules: GatewayRules = { policies: [], jwks: {} };
    const prepared: GatewayRules = { policies: [], jwks: {}, sidecar: prepareSidecar({ policies: denyAll }) };
    const gateways = [createGateway({ rules: () => rules, upstream: upstreamUrl, logger: silentLogger() }), createGateway({ rules: () => prepared, upstream: upstreamUrl, logger: silentLogger() })];
    try {
      const [plain, withSidecar] = await Promise.all(gateways.map(async (g) => new Promise<number>((resolve) => g.listen(0, '127.0.0.1', () => resolve((g.address() as AddressInfo).port)))));
      const get = (port: number) => send(port, { method: 'GET', path: '/p', headers: { host: 'serviceb' } });
      expect((await get(plain!)).status).toBe(200);
      // Editing the object a reload already handed over changes nothing: a reload swaps the whole object.
      rules.policies.push(...denyAll);
      expect((await get(plain!)).status).toBe(200);
      // A translation made at load time (gateway-main's) is the one enforced.
      expect(await get(withSidecar!)).toMatchObject({ status: 403, body: 'RBAC: access denied' });
    } finally {
      for (const g of gateways) await new Promise((resolve) => g.close(resolve));
    }
  });

  it('a --destination-port outside 1..65535 exits 2', async () => {
    await expect(
      startProcess('mesh/gateway-main.ts', { args: ['--policies', dir, '--upstream', 'http://127.0.0.1:1', '--destination-port', '0'], timeoutMs: 15_000 }),
    ).rejects.toThrow(/exited with code 2[\s\S]*--destination-port must be 1..65535, got "0"/);
  });

  it('an --istio release that is not modelled exits 2', async () => {
    await expect(
      startProcess('mesh/gateway-main.ts', { args: ['--policies', dir, '--upstream', 'http://127.0.0.1:1', '--istio', '2.0'], timeoutMs: 15_000 }),
    ).rejects.toThrow(/exited with code 2[\s\S]*--istio: Istio 2.0 is not modelled/);
  });

  it('missing --upstream exits 2 with the usage text', async () => {
    await expect(startProcess('mesh/gateway-main.ts', { args: ['--policies', dir], timeoutMs: 15_000 })).rejects.toThrow(/exited with code 2[\s\S]*--upstream is required[\s\S]*Usage: npm run mesh-gateway/);
  });
});
