import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import { parseAllDocuments } from 'yaml';
import { ensureCertificates, certificatePaths } from '../../lib/certs.js';
import { ROOT, runScript, startProcess, type Started } from '../helpers/process.js';
import { parseMeshRulesArgs, renderMeshRules } from '../../scripts/mesh-rules.js';
import { buildSecrets, runCommand as runSecrets } from '../../scripts/k8s-secrets.js';
import { loadPolicyPath } from '../../mesh/sources.js';
import { evaluate } from '../../mesh/evaluate.js';
import { BASE, OVERLAY, named, ofKind, validateObject } from './manifests.js';
import { kustomizeBuild, type K8sObject } from './kustomize.js';
import { settingsOf, type ConfigMap, type Deployment, type IstioPolicy } from './workloads.js';

/**
 * The manifests against the real processes: the factory and the services start with their
 * ConfigMap settings (only listen address, ports and local directories changed), then the tests
 * call the routes the probes and the Istio rules name, and check the rules against real tokens.
 */

const base = kustomizeBuild(BASE);
const overlay = kustomizeBuild(OVERLAY);
const configMaps = ofKind<ConfigMap>(base, 'ConfigMap');
const factorySettings = settingsOf(named(base, 'Deployment', 'jwt-factory'), configMaps);
const raOf = (svc: string) => named<IstioPolicy>(overlay, 'RequestAuthentication', `${svc}-jwt`).spec.jwtRules[0];

let tmp: string;
let keysDir: string;
let certsDir: string;
let factory: Started;
let factoryUrl: string;
const SERVICE_NAMES = ['servicea', 'serviceb', 'servicec'] as const;
const services: Partial<Record<(typeof SERVICE_NAMES)[number], Started>> = {};

/** Starts a service with its ConfigMap over its .env file; only addresses and local folders change. */
async function startService(name: (typeof SERVICE_NAMES)[number]): Promise<Started> {
  const settings = settingsOf(named(base, 'Deployment', name), configMaps);
  const env = {
    ...parseDotenv(readFileSync(path.join(ROOT, 'app', `.${name}.env`))),
    ...settings,
    HOST: '127.0.0.1',
    PORT: '0',
    ...(settings.HTTPS_PORT ? { HTTPS_PORT: '0' } : {}),
    FACTORY_URL: factoryUrl,
    CERTS_DIR: certsDir,
    SERVICE_KEYS_DIR: path.join(tmp, `${name}-self`),
  };
  return startProcess('app/main.ts', { args: [name], env });
}

async function call(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
}

async function issue(keyId: string, claims: Record<string, unknown>): Promise<string> {
  const res = await call(`${factoryUrl}/issueToken/${keyId}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(claims) });
  expect(res.status).toBe(200);
  return (await res.text()).trim();
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'k8s-live-'));
  keysDir = path.join(tmp, 'keys');
  certsDir = path.join(tmp, 'certs');
  await ensureCertificates(certsDir);
  factory = await startProcess('jwt-factory/main.ts', { env: { ...factorySettings, HOST: '127.0.0.1', PORT: '0', KEYS_DIR: keysDir } });
  factoryUrl = `http://127.0.0.1:${factory.port}`;
  // The keys the cluster needs, made locally as the docs say (the cluster's key dir is read-only).
  for (const keyId of SERVICE_NAMES) expect((await call(`${factoryUrl}/keys/${keyId}`, { method: 'POST' })).status).toBe(200);
  const started = await Promise.all(SERVICE_NAMES.map(startService));
  SERVICE_NAMES.forEach((name, i) => (services[name] = started[i]));
});

afterAll(async () => {
  await Promise.all([factory, ...Object.values(services)].filter(Boolean).map((p) => p!.stop()));
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('probes against the real processes', () => {
  it('the factory answers 200 on the paths of its readiness and liveness probes', async () => {
    const c = named<Deployment>(base, 'Deployment', 'jwt-factory').spec.template.spec.containers[0]!;
    for (const probe of [c.readinessProbe, c.livenessProbe]) {
      const res = await call(`${factoryUrl}${probe!.httpGet!.path}`);
      expect(res.status, probe!.httpGet!.path).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/application\/json/);
    }
  });

  it.each(SERVICE_NAMES)('%s, started with its ConfigMap, answers 200 on its probe paths', async (name) => {
    const c = named<Deployment>(base, 'Deployment', name).spec.template.spec.containers[0]!;
    for (const probe of [c.readinessProbe, c.livenessProbe]) {
      const res = await call(`http://127.0.0.1:${services[name]!.port}${probe!.httpGet!.path}`);
      expect(res.status, probe!.httpGet!.path).toBe(200);
    }
  });
});

describe('Istio rules against tokens the real factory issues', () => {
  it('requestPrincipals equal <iss>/<sub> of a token the factory issues for servicea', async () => {
    // The claims servicea asks for in the scenarios (app/scenarios.ts).
    const token = await issue('servicea', { sub: 'servicea', aud: 'serviceb' });
    const { iss, sub } = decodeJwt(token);
    for (const svc of ['serviceb', 'servicec']) {
      const ap = named<IstioPolicy>(overlay, 'AuthorizationPolicy', `${svc}-allow-servicea`);
      expect(ap.spec.rules[0].from[0].source.requestPrincipals).toEqual([`${iss}/${sub}`]);
      expect(raOf(svc).issuer).toBe(iss);
    }
  });

  it.each(['serviceb', 'servicec'])("the %s RequestAuthentication's jwksUri path on the factory verifies servicea's token for its audience", async (svc) => {
    const rule = raOf(svc);
    const res = await call(`${factoryUrl}${new URL(rule.jwksUri).pathname}`);
    expect(res.status).toBe(200);
    const jwks = (await res.json()) as JSONWebKeySet;
    const token = await issue('servicea', { sub: 'servicea', aud: svc });
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: rule.issuer, audience: rule.audiences });
    expect(payload.sub).toBe('servicea');
  });

  it("a token signed with another key, its sub forged to servicea, fails the per-key jwksUri (Envoy: 401)", async () => {
    const rule = raOf('serviceb');
    const jwks = (await (await call(`${factoryUrl}${new URL(rule.jwksUri).pathname}`)).json()) as JSONWebKeySet;
    const forged = await issue('serviceb', { sub: 'servicea', aud: 'serviceb' });
    await expect(jwtVerify(forged, createLocalJWKSet(jwks), { issuer: rule.issuer, audience: rule.audiences })).rejects.toThrow(/no applicable key/i);
  });
});

/** Parses mesh-rules output and validates every object against the Istio schemas. */
function parseRules(yaml: string): IstioPolicy[] {
  const objects = parseAllDocuments(yaml).map((d) => d.toJS() as K8sObject);
  for (const o of objects) validateObject(o);
  return objects as IstioPolicy[];
}

async function inlineJwks(args: string[]): Promise<{ rules: IstioPolicy[]; jwks: JSONWebKeySet }> {
  const request = parseMeshRulesArgs(['--key', 'servicea', '--audience', 'serviceb', ...args]);
  if (request === 'help') throw new Error('unexpected help');
  const rules = parseRules(await renderMeshRules(request));
  const rule = rules.find((r) => r.kind === 'RequestAuthentication')!.spec.jwtRules[0];
  expect(rule.jwksUri).toBeUndefined();
  return { rules, jwks: JSON.parse(rule.jwks) as JSONWebKeySet };
}

describe('mesh-rules with inline keys, against the real factory', () => {
  it('--inline-jwks --factory-url: the inlined jwks verifies a token the factory issued, and holds public members only', async () => {
    const { rules, jwks } = await inlineJwks(['--inline-jwks', '--factory-url', factoryUrl]);
    const token = await issue('servicea', { sub: 'servicea', aud: 'serviceb' });
    const rule = rules.find((r) => r.kind === 'RequestAuthentication')!.spec.jwtRules[0];
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: rule.issuer, audience: rule.audiences });
    expect(`${payload.iss}/${payload.sub}`).toBe(rules.find((r) => r.kind === 'AuthorizationPolicy')!.spec.rules[0].from[0].source.requestPrincipals[0]);
    for (const key of jwks.keys) for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) expect(key).not.toHaveProperty(member);
  });

  it("--inline-jwks --keys-dir: reads the factory's key files with its loader and inlines the same keys it serves", async () => {
    const fetched = await inlineJwks(['--inline-jwks', '--factory-url', factoryUrl]);
    const fromDir = await inlineJwks(['--inline-jwks', '--keys-dir', keysDir]);
    expect(fromDir.jwks).toEqual(fetched.jwks);
  });

  it('--jwks-file: a JWKS carrying private members is inlined with its public members only, and still verifies', async () => {
    const jwks = (await (await call(`${factoryUrl}/keys/servicea/jwks.json`)).json()) as { keys: Array<Record<string, unknown>> };
    const file = path.join(tmp, 'leaky-jwks.json');
    await writeFile(file, JSON.stringify({ keys: jwks.keys.map((k) => ({ ...k, d: 'bm90LWEta2V5', p: 'eA' })) }));
    const { jwks: inlined } = await inlineJwks(['--jwks-file', file]);
    expect(inlined).toEqual(jwks);
    const token = await issue('servicea', { sub: 'servicea', aud: 'serviceb' });
    await expect(jwtVerify(token, createLocalJWKSet(inlined), { audience: 'serviceb' })).resolves.toBeDefined();
  });
});

describe('k8s-secrets against the local key store and certificates', () => {
  it('builds valid Secrets named as the Deployments mount them, per service, without the CA key', async () => {
    const { objects } = await buildSecrets({ keysDir, certsDir, namespace: 'jwt-suite' });
    for (const o of objects) validateObject(o as unknown as K8sObject);
    const mounted = ofKind<Deployment>(base, 'Deployment').flatMap((d) => (d.spec.template.spec.volumes ?? []).flatMap((v) => (v.secret ? [v.secret.secretName] : [])));
    expect(objects.map((o) => o.metadata.name).sort()).toEqual([...mounted].sort());
    expect(Object.keys(objects.find((o) => o.metadata.name === 'jwt-factory-keys')!.data).sort()).toEqual(['servicea.json', 'serviceb.json', 'servicec.json']);
    for (const svc of ['servicea', 'serviceb', 'servicec']) {
      const files = Object.keys(objects.find((o) => o.metadata.name === `${svc}-tls`)!.data).sort();
      const wanted = certificatePaths('', svc);
      expect(files).toEqual([wanted.caPath, wanted.certPath, wanted.keyPath].sort());
    }
    expect(JSON.stringify(objects)).not.toMatch(/ca-key/);
  });

  it('a second factory replica on the Secret signs tokens the first one verifies, and publishes the same JWKS', async () => {
    const { objects } = await buildSecrets({ keysDir, certsDir, namespace: 'jwt-suite' });
    const replicaDir = path.join(tmp, 'replica-keys');
    await mkdir(replicaDir);
    // What the kubelet does with the Secret volume: one file per data key.
    for (const [name, b64] of Object.entries(objects.find((o) => o.metadata.name === 'jwt-factory-keys')!.data)) {
      await writeFile(path.join(replicaDir, name), Buffer.from(b64, 'base64'), { mode: 0o440 });
    }
    const replica = await startProcess('jwt-factory/main.ts', { env: { ...factorySettings, HOST: '127.0.0.1', PORT: '0', KEYS_DIR: replicaDir } });
    try {
      const replicaJwks = await (await call(`http://127.0.0.1:${replica.port}/.well-known/jwks.json`)).json();
      expect(replicaJwks).toEqual(await (await call(`${factoryUrl}/.well-known/jwks.json`)).json());
      const res = await call(`http://127.0.0.1:${replica.port}/issueToken/servicea`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ aud: 'serviceb' }) });
      const token = (await res.text()).trim();
      const verified = await call(`${factoryUrl}/verify/servicea`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, aud: 'serviceb', sub: 'servicea' }) });
      expect(verified.status).toBe(200);
      expect(((await verified.json()) as { valid: boolean }).valid).toBe(true);
    } finally {
      await replica.stop();
    }
  });

  it('the command (a real process) prints the Secrets on stdout and names only files on stderr; bad flags exit 2, a missing folder 1', async () => {
    const ok = await runScript('scripts/k8s-secrets.ts', ['--keys-dir', keysDir, '--certs-dir', certsDir]);
    expect(ok.code).toBe(0);
    const docs = parseAllDocuments(ok.stdout).map((d) => d.toJS() as K8sObject);
    expect(docs.map((d) => d.metadata.name)).toEqual(['jwt-factory-keys', 'servicea-tls', 'serviceb-tls', 'servicec-tls']);
    expect(ok.stderr).toMatch(/jwt-factory-keys: keys servicea, serviceb, servicec/);
    const keyFile = await readFile(path.join(keysDir, 'servicea.json'), 'utf8');
    const privateD = (JSON.parse(keyFile) as { versions: Array<{ jwk: { d: string } }> }).versions[0]!.jwk.d;
    for (const secretText of [privateD, 'PRIVATE KEY', Buffer.from(keyFile).toString('base64').slice(0, 40)]) expect(ok.stderr).not.toContain(secretText);
    const io = () => {
      const seen = { out: '', err: '' };
      return { seen, io: { out: (t: string) => (seen.out += t), err: (t: string) => (seen.err += t) } };
    };
    const bad = io();
    expect(await runSecrets(['--key-dir', keysDir], bad.io)).toBe(2);
    expect(bad.seen).toEqual({ out: '', err: "k8s-secrets: Unknown option '--key-dir'\n" });
    const missing = io();
    expect(await runSecrets(['--keys-dir', path.join(tmp, 'nope'), '--certs-dir', certsDir], missing.io)).toBe(1);
    expect(missing.seen.out).toBe('');
    expect(missing.seen.err).toMatch(/is not a directory/);
  });

  it('--apply hands the YAML to kubectl on its stdin and prints only what kubectl answers', async () => {
    // A stand-in kubectl that records its arguments and stdin, and answers like the real one.
    const fake = path.join(tmp, 'kubectl');
    await writeFile(fake, `#!/bin/sh\necho "$@" > "${tmp}/kubectl-args"\ncat > "${tmp}/kubectl-stdin"\necho secret/jwt-factory-keys configured\n`, { mode: 0o755 });
    let out = '';
    let err = '';
    const status = await runSecrets(['--apply', '--keys-dir', keysDir, '--certs-dir', certsDir], { out: (t) => (out += t), err: (t) => (err += t) }, fake);
    expect(status).toBe(0);
    expect(out).toBe('secret/jwt-factory-keys configured\n');
    expect(await readFile(path.join(tmp, 'kubectl-args'), 'utf8')).toBe('apply -f -\n');
    const applied = parseAllDocuments(await readFile(path.join(tmp, 'kubectl-stdin'), 'utf8')).map((d) => d.toJS() as K8sObject);
    expect(applied.map((o) => o.metadata.name)).toEqual(['jwt-factory-keys', 'servicea-tls', 'serviceb-tls', 'servicec-tls']);
    expect(err).not.toMatch(/data:|PRIVATE|"d"/);
    const none = await runSecrets(['--apply', '--keys-dir', keysDir, '--certs-dir', certsDir], { out: () => undefined, err: (t) => (err = t) }, path.join(tmp, 'no-kubectl'));
    expect(none).toBe(1);
    expect(err).toMatch(/cannot run .*no-kubectl \(ENOENT\): install it, or drop --apply/);
  });

  it('refuses a key directory holding a file the factory cannot read', async () => {
    const broken = path.join(tmp, 'broken-keys');
    await mkdir(broken);
    await writeFile(path.join(broken, 'servicea.json'), await readFile(path.join(keysDir, 'servicea.json')));
    await writeFile(path.join(broken, 'serviceb.json'), '{"format":"something else"}');
    await expect(buildSecrets({ keysDir: broken, certsDir, namespace: 'jwt-suite' })).rejects.toThrow(/cannot read serviceb\.json/);
  });
});

describe('the overlay under the mesh engine (mesh/), as istiod and Envoy would decide', () => {
  const principal = (sa: string) => `cluster.local/ns/jwt-suite/sa/${sa}`;
  let jwks: Record<string, unknown>;

  beforeAll(async () => {
    // What the sidecars fetch (PILOT_JWT_ENABLE_REMOTE_JWKS=hybrid), keyed by jwksUri.
    jwks = {};
    for (const svc of ['serviceb', 'servicec']) {
      const uri = raOf(svc).jwksUri as string;
      jwks[uri] = await (await call(`${factoryUrl}${new URL(uri).pathname}`)).json();
    }
  });

  async function decide(to: string, port: number, from: string, method: string, urlPath: string, token?: string) {
    const policies = await loadPolicyPath(OVERLAY);
    return evaluate({
      policies,
      jwks,
      now: new Date(),
      workload: { namespace: 'jwt-suite', labels: { app: to } },
      request: { method, path: urlPath, port, sourcePrincipal: principal(from), headers: token ? { authorization: `Bearer ${token}` } : {} },
    });
  }

  it.each(['serviceb', 'servicec'])('servicea reaches %s with its token (200), not without (403), not with an expired one (401)', async (svc) => {
    const port = svc === 'serviceb' ? 3001 : 3002;
    const valid = await issue('servicea', { sub: 'servicea', aud: svc });
    const ok = await decide(svc, port, 'servicea', 'GET', '/scenario1-server', valid);
    expect(ok.status).toBe(200);
    expect(ok.principal).toBe('https://jwt-factory//servicea');
    // forwardOriginalToken: the app still gets the token to verify it itself.
    expect(ok.upstreamHeaders.authorization).toBe(`Bearer ${valid}`);
    expect((await decide(svc, port, 'servicea', 'GET', '/scenario1-server')).status).toBe(403);
    const expiredRes = await call(`${factoryUrl}/issueToken/servicea?expired=1`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub: 'servicea', aud: svc }) });
    expect((await decide(svc, port, 'servicea', 'GET', '/scenario1-server', (await expiredRes.text()).trim())).status).toBe(401);
  });

  it('a valid servicea token from another identity, a token for another audience, or a forged sub are refused', async () => {
    const valid = await issue('servicea', { sub: 'servicea', aud: 'serviceb' });
    expect((await decide('serviceb', 3001, 'servicec', 'GET', '/scenario1-server', valid)).status).toBe(403);
    // Envoy's jwt_authn answers an audience mismatch with 403, not 401.
    const otherAudience = await decide('servicec', 3002, 'servicea', 'GET', '/scenario1-server', valid);
    expect([otherAudience.status, otherAudience.body]).toEqual([403, 'Audiences in Jwt are not allowed']);
    const forged = await issue('serviceb', { sub: 'servicea', aud: 'serviceb' });
    expect((await decide('serviceb', 3001, 'servicea', 'GET', '/scenario1-server', forged)).status).toBe(401);
  });

  it('the factory issues to each service for its own key only, lets the receivers verify, and creates no keys for anyone; servicea only publishes its JWKS', async () => {
    expect((await decide('jwt-factory', 5555, 'servicea', 'POST', '/issueToken/servicea')).status).toBe(200);
    // Istio's paths match the path without its query string: servicea's expired-token call passes too.
    expect((await decide('jwt-factory', 5555, 'servicea', 'POST', '/issueToken/servicea?expired=1')).status).toBe(200);
    expect((await decide('servicea', 3000, 'serviceb', 'GET', '/.well-known/jwks.json')).status).toBe(200);
    expect((await decide('servicea', 3000, 'serviceb', 'POST', '/gen-keys')).status).toBe(403);
    expect((await decide('jwt-factory', 5555, 'servicea', 'POST', '/issueToken/serviceb')).status).toBe(403);
    expect((await decide('jwt-factory', 5555, 'serviceb', 'POST', '/verify/servicea')).status).toBe(200);
    expect((await decide('jwt-factory', 5555, 'serviceb', 'GET', '/keys/servicea/jwks.json')).status).toBe(200);
    for (const sa of ['servicea', 'serviceb', 'servicec']) {
      expect((await decide('jwt-factory', 5555, sa, 'POST', '/keys/newkey')).status).toBe(403);
      expect((await decide('jwt-factory', 5555, sa, 'POST', '/keys/servicea/rotate')).status).toBe(403);
    }
  });
});
