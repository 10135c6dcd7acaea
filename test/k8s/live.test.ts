import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer as createHttpServer, request as httpRequest, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { mkdtemp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLocalJWKSet, decodeJwt, exportJWK, generateKeyPair, jwtVerify, SignJWT, type JSONWebKeySet } from 'jose';
import { parse as parseDotenv } from 'dotenv';
import { parseAllDocuments, parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ensureCertificates, certificatePaths, loadServerTls } from '../../lib/certs.js';
import { freePort } from '../../lib/ports.js';
import { ROOT, runScript, startProcess, type Started } from '../helpers/process.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { standInCluster, writeTokenFile, type StandInCluster } from '../helpers/kubernetes.js';
import { parseMeshRulesArgs, renderMeshRules } from '../../scripts/mesh-rules.js';
import { buildSecrets, runCommand as runSecrets } from '../../scripts/k8s-secrets.js';
import { loadPolicyPath } from '../../mesh/sources.js';
import { evaluate } from '../../mesh/evaluate.js';
import { BASE, OVERLAY, named, ofKind, validateObject } from './manifests.js';
import { kustomizeBuild, type K8sObject } from './kustomize.js';
import { settingsOf, type ConfigMap, type Deployment, type IstioPolicy } from './workloads.js';

/**
 * The manifests against the real processes: two factory replicas and the services start with
 * their ConfigMap settings (only listen addresses, ports and local files changed: the pods read no
 * .env file, the image carries none), on a real PostgreSQL as the StatefulSet's stand-in, with the
 * Secrets `npm run k8s-secrets` makes written out as the kubelet mounts them, and a stand-in
 * Kubernetes API server whose /openid/v1/jwks (TLS with its own CA, bearer token required) signs
 * servicea's projected service-account token. The factory runs with the overlay's settings (the
 * mesh's TRUST_XFCC), and servicea reaches it through a stand-in of the factory's sidecar that
 * appends servicea's identity to X-Forwarded-Client-Cert as Istio's inbound listener does. Then the
 * tests call the routes the probes and the Istio rules name, run scenarios 6 and 7 as a user would,
 * and check the rules against real tokens.
 */

const base = kustomizeBuild(BASE);
const overlay = kustomizeBuild(OVERLAY);
const configMaps = ofKind<ConfigMap>(base, 'ConfigMap');
const factoryDeployment = named<Deployment>(overlay, 'Deployment', 'jwt-factory');
/** In the mesh (k8s/istio), as scenario 7 needs: the base's settings with the overlay's TRUST_XFCC and XFCC_BY merged in. */
const factorySettings = settingsOf(factoryDeployment, ofKind<ConfigMap>(overlay, 'ConfigMap'));
const SERVICEA_SPIFFE_ID = `spiffe://cluster.local/ns/jwt-suite/sa/${named<Deployment>(base, 'Deployment', 'servicea').spec.template.spec.serviceAccountName}`;
const raOf = (svc: string) => named<IstioPolicy>(overlay, 'RequestAuthentication', `${svc}-jwt`).spec.jwtRules[0];
/** The projected token volume servicea mounts, and the audience its tokens carry. */
const saTokenSource = named<Deployment>(base, 'Deployment', 'servicea').spec.template.spec.volumes!.find((v) => v.projected)!.projected!.sources[0]!.serviceAccountToken!;

let tmp: string;
let certsDir: string;
let pg: TestPostgres;
let cluster: StandInCluster;
let apiServer: HttpsServer;
let factory: Started;
let replica: Started;
let factoryUrl: string;
let sidecar: HttpServer;
let sidecarUrl: string;
let replicaUrl: string;
let secretsDir: string;
let env: Record<string, string>;
const SERVICE_NAMES = ['servicea', 'serviceb', 'servicec'] as const;
const services: Partial<Record<(typeof SERVICE_NAMES)[number], Started>> = {};

/** A projected token for servicea as the kubelet writes it (the volume's audience and expirationSeconds). */
const saToken = () => cluster.token({ namespace: 'jwt-suite', serviceAccount: 'servicea', audience: saTokenSource.audience!, ttl: saTokenSource.expirationSeconds });

/** Writes a Secret's data as the kubelet mounts it: one file per key, mode 0440. */
async function mountSecret(objects: Array<{ metadata: { name: string }; data: Record<string, string> }>, name: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [key, b64] of Object.entries(objects.find((o) => o.metadata.name === name)!.data)) await writeFile(path.join(dir, key), Buffer.from(b64, 'base64'), { mode: 0o440 });
}

/** Starts a service with its ConfigMap only (the image has no .env file); only addresses and local folders change. */
async function startService(name: (typeof SERVICE_NAMES)[number]): Promise<Started> {
  const settings = settingsOf(named(base, 'Deployment', name), configMaps);
  const local = {
    HOST: '127.0.0.1',
    PORT: '0',
    ...(settings.HTTPS_PORT ? { HTTPS_PORT: '0' } : {}),
    // servicea asks replica A, the receivers verify at replica B: one key database behind both.
    FACTORY_URL: name === 'servicea' ? sidecarUrl : replicaUrl,
    CERTS_DIR: certsDir,
    SERVICE_KEYS_DIR: path.join(tmp, `${name}-self`),
    ...(settings.FACTORY_ASSERTION_FILE ? { FACTORY_ASSERTION_FILE: path.join(tmp, 'servicea-token') } : {}),
    // servicea calls the receivers: their cluster DNS names become the local processes.
    ...(name === 'servicea' ? { SERVICEB_URL: `http://127.0.0.1:${services.serviceb!.port}`, SERVICEC_URL: `http://127.0.0.1:${services.servicec!.port}` } : {}),
  };
  // The image has no app/.<service>.env, but the source tree does: every line of it the ConfigMap
  // does not set is emptied (an empty setting is an absent one), so the process sees what the pod sees.
  const dotenv = parseDotenv(readFileSync(path.join(ROOT, 'app', `.${name}.env`)));
  const absent = Object.fromEntries(Object.keys(dotenv).filter((k) => !(k in settings)).map((k) => [k, '']));
  return startProcess('app/main.ts', { args: [name], env: { ...absent, ...settings, ...local }, timeoutMs: 60_000 });
}

/**
 * The factory's sidecar as seen by the factory, for servicea's calls: Istio's inbound listener
 * (APPEND_FORWARD, Subject, URI and DNS) appends one element for the mTLS peer after whatever
 * the caller sent, its By the factory's own SPIFFE id. The test plays it over plain HTTP.
 */
function serviceaSidecar(upstreamPort: number): HttpServer {
  return createHttpServer((req, res) => {
    const element = `By=${factorySettings.XFCC_BY};Hash=0000;Subject="";URI=${SERVICEA_SPIFFE_ID}`;
    const previous = req.headers['x-forwarded-client-cert'];
    const headers = { ...req.headers, 'x-forwarded-client-cert': previous ? `${previous},${element}` : element };
    const upstream = httpRequest({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.writeHead(502).end());
    req.pipe(upstream);
  });
}

async function call(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, signal: AbortSignal.timeout(20_000) });
}

/** servicea's factory access token, bought with a fresh projected token (the jwt-bearer grant). */
async function serviceaBearer(): Promise<string> {
  const res = await call(`${factoryUrl}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: await saToken(), audience: factorySettings.ISSUER! }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

/** The password grant with the ConfigMap's cli client, as a user does through a port-forward (its demo secret, README). */
async function passwordGrant(username: string, password: string): Promise<{ access_token: string; id_token: string }> {
  const res = await call(`${factoryUrl}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('cli:cli-secret').toString('base64')}` },
    body: new URLSearchParams({ grant_type: 'password', username, password, scope: 'openid profile' }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { access_token: string; id_token: string };
}

/** POST /issueToken/<keyId> as servicea (bearer), answering the raw response. */
async function issueAs(bearer: string, keyId: string, claims: Record<string, unknown>, query = '', url = factoryUrl): Promise<Response> {
  return call(`${url}/issueToken/${keyId}${query}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` }, body: JSON.stringify(claims) });
}

let bearer: string;
async function issue(keyId: string, claims: Record<string, unknown>, query = ''): Promise<string> {
  const res = await issueAs(bearer, keyId, claims, query);
  expect(res.status).toBe(200);
  return (await res.text()).trim();
}

/** A token claiming iss ISSUER and sub servicea, signed with a key the factory never had. */
async function forgedToken(): Promise<string> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const kid = (await exportJWK(publicKey)).n!.slice(0, 16);
  return new SignJWT({ sub: 'servicea', aud: 'serviceb' }).setProtectedHeader({ alg: 'RS256', kid }).setIssuer(factorySettings.ISSUER!).setIssuedAt().setExpirationTime('5m').sign(privateKey);
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'k8s-live-'));
  certsDir = path.join(tmp, 'certs');
  secretsDir = path.join(tmp, 'cluster-secrets');
  const [, , started] = await Promise.all([ensureCertificates(certsDir), ensureCertificates(path.join(tmp, 'kube-pki'), { services: ['kubernetes'] }), startPostgres()]);
  pg = started;
  cluster = await standInCluster();

  // The stand-in API server: /openid/v1/jwks over TLS, to the factory's own service-account token only.
  const factoryApiToken = await cluster.token({ namespace: 'jwt-suite', serviceAccount: 'jwt-factory', audience: cluster.issuer, ttl: 3600 });
  const apiTls = await loadServerTls(path.join(tmp, 'kube-pki'), 'kubernetes');
  apiServer = createHttpsServer({ cert: apiTls.cert, key: apiTls.key }, (req, res) => {
    if (req.url !== '/openid/v1/jwks') return res.writeHead(404).end();
    if (req.headers.authorization !== `Bearer ${factoryApiToken}`) return res.writeHead(403).end();
    res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify(cluster.jwks));
  });
  const apiPort = await freePort();
  await new Promise<void>((resolve) => apiServer.listen(apiPort, '127.0.0.1', resolve));

  // The factory's volumes: the OIDC ConfigMap, the encryption-key Secret, the kube-api projection.
  const oidcConfigMap = configMaps.find((c) => c.data['oidc.yaml'] !== undefined)!;
  const oidc = parseYaml(oidcConfigMap.data['oidc.yaml']!) as { trusted_issuers: Array<Record<string, string>> };
  const kubeApiDir = path.join(tmp, 'kube-api');
  await mkdir(kubeApiDir);
  await writeFile(path.join(kubeApiDir, 'token'), factoryApiToken);
  await writeFile(path.join(kubeApiDir, 'ca.crt'), await readFile(certificatePaths(path.join(tmp, 'kube-pki'), 'kubernetes').caPath));
  for (const t of oidc.trusted_issuers) {
    t.jwks_uri = `https://127.0.0.1:${apiPort}${new URL(t.jwks_uri!).pathname}`;
    t.jwks_ca_file = path.join(kubeApiDir, path.basename(t.jwks_ca_file!));
    t.jwks_token_file = path.join(kubeApiDir, path.basename(t.jwks_token_file!));
  }
  await writeFile(path.join(tmp, 'oidc.yaml'), stringifyYaml(oidc));
  const { objects } = await buildSecrets({ secretsDir, certsDir, namespace: 'jwt-suite' });
  await mountSecret(objects, 'jwt-factory-encryption-key', path.join(tmp, 'encryption'));

  // The StatefulSet's database and user, with the password of the Secret.
  const password = Buffer.from(objects.find((o) => o.metadata.name === 'jwt-factory-postgres')!.data.password!, 'base64').toString();
  const storeUrl = new URL(factorySettings.KEY_STORE!);
  await pg.sql(`CREATE ROLE ${storeUrl.username} LOGIN PASSWORD '${password}'`);
  await pg.sql(`CREATE DATABASE ${storeUrl.pathname.slice(1)} OWNER ${storeUrl.username}`);
  // As the StatefulSet's POSTGRES_INITDB_ARGS: that user proves its password (scram-sha-256), trust stays for the test's own superuser.
  const hba = await pg.sql('SHOW hba_file');
  await writeFile(hba, `host all ${storeUrl.username} 127.0.0.1/32 scram-sha-256\n${await readFile(hba, 'utf8')}`);
  await pg.sql('SELECT pg_reload_conf()');
  storeUrl.hostname = '127.0.0.1';
  storeUrl.port = String(pg.port);

  env = {
    ...factorySettings,
    HOST: '127.0.0.1',
    PORT: '0',
    KEY_STORE: storeUrl.href,
    KEY_ENCRYPTION_KEY_FILE: path.join(tmp, 'encryption', path.basename(factorySettings.KEY_ENCRYPTION_KEY_FILE!)),
    OIDC_CONFIG: path.join(tmp, 'oidc.yaml'),
    PGPASSWORD: password,
  };
  // Two replicas starting together on one database (their migrations run under a lock).
  const replicas = await Promise.all(['a', 'b'].map((r) => startProcess('jwt-factory/main.ts', { env: { ...env, KEYS_DIR: path.join(tmp, `state-${r}`) }, timeoutMs: 90_000 })));
  factory = replicas[0]!;
  replica = replicas[1]!;
  factoryUrl = `http://127.0.0.1:${factory.port}`;
  replicaUrl = `http://127.0.0.1:${replica.port}`;
  sidecar = serviceaSidecar(factory.port);
  await new Promise<void>((resolve) => sidecar.listen(0, '127.0.0.1', resolve));
  sidecarUrl = `http://127.0.0.1:${(sidecar.address() as { port: number }).port}`;
  await writeTokenFile(path.join(tmp, 'servicea-token'), await saToken());
  bearer = await serviceaBearer();
  [services.serviceb, services.servicec] = await Promise.all([startService('serviceb'), startService('servicec')]);
  services.servicea = await startService('servicea');
}, 240_000);

afterAll(async () => {
  await Promise.all([factory, replica, ...Object.values(services)].filter(Boolean).map((p) => p!.stop()));
  if (apiServer) await new Promise((resolve) => apiServer.close(resolve));
  if (sidecar) await new Promise((resolve) => sidecar.close(resolve));
  await pg?.remove();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('the cluster path against the real processes', () => {
  it("servicea's scenario 2 works end to end: its projected token buys its access token, replica A mints, the receivers verify at replica B", async () => {
    const res = await call(`http://127.0.0.1:${services.servicea!.port}/scenario2`);
    const body = (await res.json()) as Record<string, { status: number; valid: boolean; claims: Record<string, unknown> }>;
    expect(res.status, JSON.stringify(body)).toBe(200);
    for (const svc of ['serviceb', 'servicec']) expect(body[svc]).toMatchObject({ status: 200, valid: true, claims: { iss: factorySettings.ISSUER, sub: 'servicea', aud: svc } });
    expect(services.servicea!.output()).toMatch(/exchanged the service-account token for a factory access token/);
  });

  it("scenario 6 runs as shipped: the ConfigMap's cli client and admin's hashed password give an id token, servicea presents it, serviceb accepts it", async () => {
    const idToken = (await passwordGrant('admin', 'admin')).id_token;
    expect(decodeJwt(idToken)).toMatchObject({ sub: 'admin', aud: 'cli', iss: factorySettings.ISSUER });
    const res = await call(`http://127.0.0.1:${services.servicea!.port}/scenario6`, { headers: { authorization: `Bearer ${idToken}` } });
    const body = (await res.json()) as Record<string, { status: number; valid: boolean; claims: Record<string, unknown> }>;
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.serviceb).toMatchObject({ status: 200, valid: true, claims: { sub: 'admin', aud: 'cli' } });
  });

  it("scenario 7 runs as shipped: servicea exchanges alice's token authenticated by its mesh identity (tls_client_auth via the sidecar's XFCC), servicec accepts the delegated token", async () => {
    const accessToken = (await passwordGrant('alice', 'alice-password')).access_token;
    const res = await call(`http://127.0.0.1:${services.servicea!.port}/scenario7`, { headers: { authorization: `Bearer ${accessToken}` } });
    const body = (await res.json()) as Record<string, { status: number; valid: boolean; claims: Record<string, unknown> }>;
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.servicec).toMatchObject({ status: 200, valid: true, claims: { sub: 'alice', aud: 'servicec', act: { sub: 'servicea' } } });
  });

  it("servicea's exchange is refused without its sidecar's word, or with another workload's identity, and the projected-token path is unchanged", async () => {
    const accessToken = (await passwordGrant('alice', 'alice-password')).access_token;
    const exchange = (headers: Record<string, string>) =>
      call(`${factoryUrl}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', client_id: 'servicea', subject_token: accessToken, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', audience: 'servicec' }),
      });
    const bare = await exchange({});
    expect([bare.status, ((await bare.json()) as { error: string }).error]).toEqual([401, 'invalid_client']);
    const serviceb = await exchange({ 'x-forwarded-client-cert': `By=${factorySettings.XFCC_BY};URI=spiffe://cluster.local/ns/jwt-suite/sa/serviceb` });
    expect([serviceb.status, ((await serviceb.json()) as { error: string }).error]).toEqual([401, 'invalid_client']);
    const otherSidecar = await exchange({ 'x-forwarded-client-cert': `By=spiffe://cluster.local/ns/other/sa/gateway;URI=${SERVICEA_SPIFFE_ID}` });
    expect([otherSidecar.status, ((await otherSidecar.json()) as { error: string }).error]).toEqual([401, 'invalid_client']);
    // The projected token still buys servicea's factory access token, through its sidecar too.
    const viaSidecar = await call(`${sidecarUrl}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: await saToken(), audience: factorySettings.ISSUER! }),
    });
    expect(viaSidecar.status).toBe(200);
  });

  it('refuses anonymous issuance, a sub override and another keyId, in client mode', async () => {
    const anonymous = await call(`${factoryUrl}/issueToken/servicea`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"aud":"serviceb"}' });
    expect([anonymous.status, ((await anonymous.json()) as any).error.code]).toEqual([401, 'invalid_client']);
    const sub = await issueAs(bearer, 'servicea', { sub: 'admin', aud: 'serviceb' });
    expect([sub.status, ((await sub.json()) as any).error.code]).toEqual([400, 'claim_not_allowed']);
    const other = await issueAs(bearer, 'serviceb', { aud: 'serviceb' });
    expect([other.status, ((await other.json()) as any).error.code]).toEqual([403, 'key_not_owned']);
  });

  it('both replicas publish the same JWKS (one key database), and a token from A verifies at B', async () => {
    const [a, b] = await Promise.all([factoryUrl, replicaUrl].map(async (u) => (await call(`${u}/.well-known/jwks.json`)).json()));
    expect(b).toEqual(a);
    const token = await issue('servicea', { aud: 'serviceb' });
    const verified = await call(`${replicaUrl}/verify/servicea`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, aud: 'serviceb', sub: 'servicea' }) });
    expect(verified.status).toBe(200);
  });

  it('rotation is on: GET /keys/servicea shows the schedule of the ConfigMap ROTATION_INTERVAL', async () => {
    const res = await call(`${factoryUrl}/keys/servicea`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { rotation: { interval: number; publishAhead: number; nextAt: string | null } };
    expect(body.rotation.interval).toBe(Number(factorySettings.ROTATION_INTERVAL));
    expect(body.rotation.nextAt).not.toBeNull();
  });

  it('a replica with another PGPASSWORD than the Secret\'s is refused by the database and stops, naming neither password', async () => {
    const refused = await startProcess('jwt-factory/main.ts', { env: { ...env, KEYS_DIR: path.join(tmp, 'state-c'), PGPASSWORD: 'not-the-secret-password' }, timeoutMs: 60_000 }).then(
      () => undefined,
      (err: Error) => err.message,
    );
    expect(refused).toMatch(/exited with code 1 before listening[\s\S]*password authentication failed/);
    expect(refused).not.toContain('not-the-secret-password');
    expect(refused).not.toContain(env.PGPASSWORD);
  });

  it('the key database holds no plain private key (sealed with the Secret\'s encryption key)', async () => {
    const dump = await pg.dump();
    expect(dump).not.toMatch(/PRIVATE KEY|"d":/);
  });
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
    const token = await issue('servicea', { aud: 'serviceb' });
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
    const token = await issue('servicea', { aud: svc });
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: rule.issuer, audience: rule.audiences });
    expect(payload.sub).toBe('servicea');
  });

  it("a token signed with another key, its sub forged to servicea, fails the per-key jwksUri (Envoy: 401)", async () => {
    // In client mode no client can have the factory sign sub servicea with another key (403 key_not_owned above), so the forger signs with a key of its own.
    const rule = raOf('serviceb');
    const jwks = (await (await call(`${factoryUrl}${new URL(rule.jwksUri).pathname}`)).json()) as JSONWebKeySet;
    const forged = await forgedToken();
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
    const token = await issue('servicea', { aud: 'serviceb' });
    const rule = rules.find((r) => r.kind === 'RequestAuthentication')!.spec.jwtRules[0];
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: rule.issuer, audience: rule.audiences });
    expect(`${payload.iss}/${payload.sub}`).toBe(rules.find((r) => r.kind === 'AuthorizationPolicy')!.spec.rules[0].from[0].source.requestPrincipals[0]);
    for (const key of jwks.keys) for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) expect(key).not.toHaveProperty(member);
  });

  it("--inline-jwks --keys-dir: reads a file store's key files with the factory's loader and inlines the same keys that factory serves", async () => {
    // The cluster keeps its keys in PostgreSQL; --keys-dir is for a factory on a folder (KEY_STORE=file).
    const keysDir = path.join(tmp, 'file-keys');
    const local = await startProcess('jwt-factory/main.ts', { env: { HOST: '127.0.0.1', PORT: '0', KEYS_DIR: keysDir }, timeoutMs: 60_000 });
    try {
      expect((await call(`http://127.0.0.1:${local.port}/keys/servicea`, { method: 'POST' })).status).toBe(200);
      const fetched = await inlineJwks(['--inline-jwks', '--factory-url', `http://127.0.0.1:${local.port}`]);
      const fromDir = await inlineJwks(['--inline-jwks', '--keys-dir', keysDir]);
      expect(fromDir.jwks).toEqual(fetched.jwks);
    } finally {
      await local.stop();
    }
  });

  it('--jwks-file: a JWKS carrying private members is inlined with its public members only, and still verifies', async () => {
    const jwks = (await (await call(`${factoryUrl}/keys/servicea/jwks.json`)).json()) as { keys: Array<Record<string, unknown>> };
    const file = path.join(tmp, 'leaky-jwks.json');
    await writeFile(file, JSON.stringify({ keys: jwks.keys.map((k) => ({ ...k, d: 'bm90LWEta2V5', p: 'eA' })) }));
    const { jwks: inlined } = await inlineJwks(['--jwks-file', file]);
    expect(inlined).toEqual(jwks);
    const token = await issue('servicea', { aud: 'serviceb' });
    await expect(jwtVerify(token, createLocalJWKSet(inlined), { audience: 'serviceb' })).resolves.toBeDefined();
  });
});

describe('k8s-secrets: the encryption key, the database password and the certificates', () => {
  it('builds valid Secrets named as the workloads mount or reference them, per service, without the CA key', async () => {
    const { objects } = await buildSecrets({ secretsDir, certsDir, namespace: 'jwt-suite' });
    for (const o of objects) validateObject(o as unknown as K8sObject);
    const workloads = [...ofKind<Deployment>(base, 'Deployment'), ...ofKind<Deployment>(base, 'StatefulSet')];
    const referenced = new Set(
      workloads.flatMap((d) => [
        ...(d.spec.template.spec.volumes ?? []).flatMap((v) => (v.secret ? [v.secret.secretName] : [])),
        ...d.spec.template.spec.containers.flatMap((c) => (c.env ?? []).flatMap((e) => (e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef.name] : []))),
      ]),
    );
    expect(objects.map((o) => o.metadata.name).sort()).toEqual([...referenced].sort());
    expect(Object.keys(objects.find((o) => o.metadata.name === 'jwt-factory-encryption-key')!.data)).toEqual([path.basename(factorySettings.KEY_ENCRYPTION_KEY_FILE!)]);
    for (const svc of ['servicea', 'serviceb', 'servicec']) {
      const files = Object.keys(objects.find((o) => o.metadata.name === `${svc}-tls`)!.data).sort();
      const wanted = certificatePaths('', svc);
      expect(files).toEqual([wanted.caPath, wanted.certPath, wanted.keyPath].sort());
    }
    expect(JSON.stringify(objects)).not.toMatch(/ca-key/);
    // No client secret of a service in any Secret: the services prove themselves with their projected tokens.
    expect(objects.map((o) => o.metadata.name).filter((n) => /client|oidc|servicea-secret/.test(n))).toEqual([]);
  });

  it('makes the encryption key and the password once (mode 0600) and packs the same ones on every later run', async () => {
    const first = await buildSecrets({ secretsDir, certsDir, namespace: 'jwt-suite' });
    const again = await buildSecrets({ secretsDir, certsDir, namespace: 'jwt-suite' });
    expect(again.objects).toEqual(first.objects);
    expect(again.summary.some((l) => l.startsWith('made '))).toBe(false);
    for (const file of ['key-encryption-key', 'postgres-password']) expect((await stat(path.join(secretsDir, file))).mode & 0o777).toBe(0o600);
    const fresh = await buildSecrets({ secretsDir: path.join(tmp, 'fresh-secrets'), certsDir, namespace: 'jwt-suite' });
    expect(fresh.summary.filter((l) => l.startsWith('made '))).toHaveLength(2);
    expect(fresh.objects[0]!.data).not.toEqual(first.objects[0]!.data);
  });

  it('refuses a kept encryption key that is not 32 bytes of base64, rather than replacing it', async () => {
    const broken = path.join(tmp, 'broken-secrets');
    await mkdir(broken);
    await writeFile(path.join(broken, 'key-encryption-key'), 'not-a-key\n');
    await expect(buildSecrets({ secretsDir: broken, certsDir, namespace: 'jwt-suite' })).rejects.toThrow(/key-encryption-key must be 32 random bytes in base64.*fix or remove it/);
    expect(await readFile(path.join(broken, 'key-encryption-key'), 'utf8')).toBe('not-a-key\n');
  });

  it('the command (a real process) prints the Secrets on stdout and names only files on stderr; bad flags exit 2, missing certificates 1', async () => {
    const ok = await runScript('scripts/k8s-secrets.ts', ['--secrets-dir', secretsDir, '--certs-dir', certsDir]);
    expect(ok.code).toBe(0);
    const docs = parseAllDocuments(ok.stdout).map((d) => d.toJS() as K8sObject);
    expect(docs.map((d) => d.metadata.name)).toEqual(['jwt-factory-encryption-key', 'jwt-factory-postgres', 'servicea-tls', 'serviceb-tls', 'servicec-tls']);
    expect(ok.stderr).toMatch(/jwt-factory-encryption-key: key from .*key-encryption-key/);
    const key = (await readFile(path.join(secretsDir, 'key-encryption-key'), 'utf8')).trim();
    const password = (await readFile(path.join(secretsDir, 'postgres-password'), 'utf8')).trim();
    for (const secretText of [key, password, Buffer.from(key).toString('base64'), 'PRIVATE KEY']) expect(ok.stderr).not.toContain(secretText);
    const io = () => {
      const seen = { out: '', err: '' };
      return { seen, io: { out: (t: string) => (seen.out += t), err: (t: string) => (seen.err += t) } };
    };
    const bad = io();
    expect(await runSecrets(['--keys-dir', 'keys'], bad.io)).toBe(2);
    expect(bad.seen).toEqual({ out: '', err: "k8s-secrets: Unknown option '--keys-dir'\n" });
    const missing = io();
    expect(await runSecrets(['--secrets-dir', secretsDir, '--certs-dir', path.join(tmp, 'nope')], missing.io)).toBe(1);
    expect(missing.seen.out).toBe('');
    expect(missing.seen.err).toMatch(/is missing: run npm run certs first/);
  });

  it('--apply hands the YAML to kubectl on its stdin and prints only what kubectl answers', async () => {
    // A stand-in kubectl that records its arguments and stdin, and answers like the real one.
    const fake = path.join(tmp, 'kubectl');
    await writeFile(fake, `#!/bin/sh\necho "$@" > "${tmp}/kubectl-args"\ncat > "${tmp}/kubectl-stdin"\necho secret/jwt-factory-encryption-key configured\n`, { mode: 0o755 });
    let out = '';
    let err = '';
    const status = await runSecrets(['--apply', '--secrets-dir', secretsDir, '--certs-dir', certsDir], { out: (t) => (out += t), err: (t) => (err += t) }, fake);
    expect(status).toBe(0);
    expect(out).toBe('secret/jwt-factory-encryption-key configured\n');
    expect(await readFile(path.join(tmp, 'kubectl-args'), 'utf8')).toBe('apply -f -\n');
    const applied = parseAllDocuments(await readFile(path.join(tmp, 'kubectl-stdin'), 'utf8')).map((d) => d.toJS() as K8sObject);
    expect(applied.map((o) => o.metadata.name)).toEqual(['jwt-factory-encryption-key', 'jwt-factory-postgres', 'servicea-tls', 'serviceb-tls', 'servicec-tls']);
    expect(err).not.toMatch(/data:|PRIVATE/);
    const none = await runSecrets(['--apply', '--secrets-dir', secretsDir, '--certs-dir', certsDir], { out: () => undefined, err: (t) => (err = t) }, path.join(tmp, 'no-kubectl'));
    expect(none).toBe(1);
    expect(err).toMatch(/cannot run .*no-kubectl \(ENOENT\): install it, or drop --apply/);
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
    const valid = await issue('servicea', { aud: svc });
    const ok = await decide(svc, port, 'servicea', 'GET', '/scenario1-server', valid);
    expect(ok.status).toBe(200);
    expect(ok.principal).toBe('https://jwt-factory//servicea');
    // forwardOriginalToken: the app still gets the token to verify it itself.
    expect(ok.upstreamHeaders.authorization).toBe(`Bearer ${valid}`);
    expect((await decide(svc, port, 'servicea', 'GET', '/scenario1-server')).status).toBe(403);
    const expired = await issue('servicea', { aud: svc }, '?expired=1');
    expect((await decide(svc, port, 'servicea', 'GET', '/scenario1-server', expired)).status).toBe(401);
  });

  it('a valid servicea token from another identity, a token for another audience, or a forged sub are refused', async () => {
    const valid = await issue('servicea', { aud: 'serviceb' });
    expect((await decide('serviceb', 3001, 'servicec', 'GET', '/scenario1-server', valid)).status).toBe(403);
    // Envoy's jwt_authn answers an audience mismatch with 403, not 401.
    const otherAudience = await decide('servicec', 3002, 'servicea', 'GET', '/scenario1-server', valid);
    expect([otherAudience.status, otherAudience.body]).toEqual([403, 'Audiences in Jwt are not allowed']);
    const forged = await forgedToken();
    expect((await decide('serviceb', 3001, 'servicea', 'GET', '/scenario1-server', forged)).status).toBe(401);
  });

  it('the factory issues to each service for its own key only, lets the receivers verify, and creates no keys for anyone; servicea only publishes its JWKS', async () => {
    expect((await decide('jwt-factory', 5555, 'servicea', 'POST', '/issueToken/servicea')).status).toBe(200);
    // Istio's paths match the path without its query string: servicea's expired-token call passes too.
    expect((await decide('jwt-factory', 5555, 'servicea', 'POST', '/issueToken/servicea?expired=1')).status).toBe(200);
    expect((await decide('servicea', 3000, 'serviceb', 'GET', '/.well-known/jwks.json')).status).toBe(200);
    expect((await decide('servicea', 3000, 'serviceb', 'POST', '/gen-keys')).status).toBe(403);
    expect((await decide('jwt-factory', 5555, 'servicea', 'POST', '/issueToken/serviceb')).status).toBe(403);
    // servicea's jwt-bearer grant; the key database from the factory only.
    expect((await decide('jwt-factory', 5555, 'servicea', 'POST', '/token')).status).toBe(200);
    expect((await decide('jwt-factory', 5555, 'serviceb', 'POST', '/token')).status).toBe(403);
    expect((await decide('jwt-factory-postgres', 5432, 'jwt-factory', 'GET', '/')).status).toBe(200);
    expect((await decide('jwt-factory-postgres', 5432, 'servicea', 'GET', '/')).status).toBe(403);
    expect((await decide('jwt-factory', 5555, 'serviceb', 'POST', '/verify/servicea')).status).toBe(200);
    expect((await decide('jwt-factory', 5555, 'serviceb', 'GET', '/keys/servicea/jwks.json')).status).toBe(200);
    for (const sa of ['servicea', 'serviceb', 'servicec']) {
      expect((await decide('jwt-factory', 5555, sa, 'POST', '/keys/newkey')).status).toBe(403);
      expect((await decide('jwt-factory', 5555, sa, 'POST', '/keys/servicea/rotate')).status).toBe(403);
    }
  });
});
