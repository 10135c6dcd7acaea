import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { parseAllDocuments, stringify } from 'yaml';
import { envoyBinaries } from '../tools.js';
import { launch, processCommand, processCpuMs, processTree, ROOT, type Launched } from './launch.js';
import type { CpuMeter, LoadTarget } from './load.js';
import type { RowResult } from './report.js';

/**
 * The gateway rows (`npm run bench -- --gateway`): the same request through `mesh-gateway` (the
 * suite's engine) and through the real Envoy running the same translated rules (`mesh-gateway
 * --envoy`), each in front of one echo upstream, beside the upstream called directly. What a
 * proxy adds is its row's latency minus the direct row's, and its CPU per request.
 */

/** The k8s/istio objects of serviceb, the workload the rules protect, and its caller's token. */
const WORKLOAD = ['--workload', 'app=serviceb', '--namespace', 'jwt-suite'];
const ISSUER = 'https://jwt-factory/';
const ALLOW_SERVICEA = 'serviceb-allow-servicea';

export const GATEWAY_ROW = { direct: 'gateway-direct', engine: 'gateway-engine', envoy: 'gateway-envoy' } as const;

/** What the gateway rows load, and what the bench stops afterwards. */
export interface GatewayContenders {
  contenders: Array<{ row: Omit<RowResult, 'load'>; target: LoadTarget; cpu: CpuMeter }>;
  skipped: RowResult[];
  started: Launched[];
}

/**
 * k8s/istio as the gateway enforces it here. Every object is kept as written but one:
 * serviceb-allow-servicea loses its `principals` (servicea's mTLS identity) and `ports` (the
 * pod's 3001), which no local proxy sees (`mesh-gateway --envoy` has no mTLS peer and listens on
 * a free port). The rules that need an mTLS identity then match nothing in both, as in a cluster
 * for a caller without one; the request principal https://jwt-factory//servicea is still required.
 */
export async function localRules(dir: string): Promise<string> {
  const source = path.join(ROOT, 'k8s', 'istio');
  await mkdir(dir, { recursive: true });
  for (const name of (await readdir(source)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')) {
    const docs = parseAllDocuments(await readFile(path.join(source, name), 'utf8')).map((d) => d.toJS() as Record<string, any>);
    for (const doc of docs) {
      if (doc?.kind !== 'AuthorizationPolicy' || doc.metadata?.name !== ALLOW_SERVICEA) continue;
      for (const rule of doc.spec.rules) {
        for (const from of rule.from ?? []) delete from.source.principals;
        delete rule.to;
      }
    }
    await writeFile(path.join(dir, name), docs.map((d) => stringify(d)).join('---\n'));
  }
  return dir;
}

/** An RS256 key of the factory's issuer, its JWKS keyed by that issuer (`--jwks-file`), and servicea's token for serviceb. */
async function callerToken(jwksFile: string): Promise<string> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  await writeFile(jwksFile, JSON.stringify({ [ISSUER]: { keys: [{ ...jwk, kid, alg: 'RS256', use: 'sig' }] } }));
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: ISSUER, sub: 'servicea', aud: 'serviceb', iat: now, exp: now + 4 * 3600 })
    .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
    .sign(privateKey);
}

/** The newest Envoy under .tools/ (bash scripts/install-tools.sh), if any. */
export function newestEnvoy(): { version: string; binary: string } | undefined {
  const byVersion = Object.entries(envoyBinaries()).sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }));
  const newest = byVersion.at(-1);
  return newest && { version: newest[0], binary: newest[1] };
}

/** The Envoy process `mesh-gateway --envoy` started: its descendant whose command is envoy. */
const envoyPid = (gatewayPid: number): number | undefined => processTree(gatewayPid).find((pid) => pid !== gatewayPid && processCommand(pid) === 'envoy');

/** Sends `target` once: the status and the body. */
async function once(target: LoadTarget): Promise<{ status: number; body: string }> {
  const res = await fetch(target.url, { method: target.method ?? 'GET', headers: target.headers, signal: AbortSignal.timeout(15_000) });
  return { status: res.status, body: await res.text() };
}

/** The rules are enforced, not bypassed: without a token 403, with servicea's token the upstream's 200. */
async function checkEnforced(target: LoadTarget): Promise<void> {
  const { authorization: _token, ...headers } = target.headers ?? {};
  const denied = await once({ ...target, headers });
  if (denied.status !== 403) throw new Error(`a request without a token answered ${denied.status}, not 403`);
  const allowed = await once(target);
  if (allowed.status !== 200 || !allowed.body.includes('"ok":true')) throw new Error(`servicea's token answered ${allowed.status} ${allowed.body.slice(0, 100)}, not the upstream's 200`);
}

/**
 * Starts the echo upstream, mesh-gateway and mesh-gateway --envoy on the same rules, checks each
 * enforces them, and names the request every row repeats (GET with servicea's token). A gateway
 * that cannot run here (no Envoy binary, or a start-up failure) is a skipped row with the reason.
 */
export async function startGatewayContenders(tmpDir: string, progress: (line: string) => void): Promise<GatewayContenders> {
  const dir = path.join(tmpDir, 'gateway');
  const policies = await localRules(path.join(dir, 'policies'));
  const jwksFile = path.join(dir, 'jwks.json');
  const token = await callerToken(jwksFile);
  const started: Launched[] = [];
  const contenders: GatewayContenders['contenders'] = [];
  const skipped: RowResult[] = [];
  const request = (port: number): LoadTarget => ({ url: `http://127.0.0.1:${port}/scenario1-server`, headers: { authorization: `Bearer ${token}` } });
  const row = (id: string, label: string) => ({ id, label, group: 'gateway' as const, op: 'proxy' as const });

  const echo = await launch('scripts/bench/echo-process.ts', { env: { PORT: '0' }, logFile: path.join(dir, 'echo.log') });
  started.push(echo);
  const upstream = `http://127.0.0.1:${echo.port}`;
  contenders.push({ row: row(GATEWAY_ROW.direct, 'gateway: the echo upstream called directly'), target: request(echo.port), cpu: () => processCpuMs(echo.pid) ?? 0 });

  const gateway = (extra: string[], log: string) =>
    launch('mesh/gateway-main.ts', { args: ['--policies', policies, '--jwks-file', jwksFile, '--upstream', upstream, '--port', '0', ...WORKLOAD, ...extra], env: { LOG_LEVEL: 'info' }, logFile: path.join(dir, log) });

  progress('starting mesh-gateway (the engine) on k8s/istio');
  const engine = await gateway([], 'mesh-gateway.log');
  started.push(engine);
  const engineRow = row(GATEWAY_ROW.engine, 'gateway: mesh-gateway (engine), k8s/istio, servicea token');
  try {
    await checkEnforced(request(engine.port));
    contenders.push({ row: engineRow, target: request(engine.port), cpu: () => processCpuMs(engine.pid) ?? 0 });
  } catch (err) {
    skipped.push({ ...engineRow, skipped: `mesh-gateway does not enforce the rules: ${(err as Error).message}` });
  }

  const envoy = newestEnvoy();
  const envoyLabel = `gateway: Envoy${envoy ? ` ${envoy.version}` : ''} (mesh-gateway --envoy), k8s/istio, servicea token`;
  if (!envoy) {
    skipped.push({ ...row(GATEWAY_ROW.envoy, envoyLabel), skipped: 'no Envoy binary under .tools/envoy-* (bash scripts/install-tools.sh installs it)' });
    return { contenders, skipped, started };
  }
  progress(`starting mesh-gateway --envoy (Envoy ${envoy.version}) on the same rules`);
  const real = await gateway(['--envoy', envoy.binary], 'mesh-gateway-envoy.log');
  started.push(real);
  const pid = envoyPid(real.pid);
  try {
    if (pid === undefined) throw new Error('no envoy process under mesh-gateway --envoy');
    await checkEnforced(request(real.port));
    // Envoy's own CPU, as an Istio sidecar's: mesh-gateway's node process only relays its access log.
    contenders.push({ row: row(GATEWAY_ROW.envoy, envoyLabel), target: request(real.port), cpu: () => processCpuMs(pid) ?? 0 });
  } catch (err) {
    skipped.push({ ...row(GATEWAY_ROW.envoy, envoyLabel), skipped: `Envoy does not enforce the rules: ${(err as Error).message}` });
  }
  return { contenders, skipped, started };
}

/** What each gateway adds to the direct call: p50 and p99 latency, and its own CPU per request. */
export function gatewayLines(rows: RowResult[]): string[] {
  const direct = rows.find((r) => r.id === GATEWAY_ROW.direct)?.load;
  if (!direct) return [];
  const ms = (v: number) => `${v >= 0 ? '+' : ''}${Math.round(v * 100) / 100} ms`;
  return [GATEWAY_ROW.engine, GATEWAY_ROW.envoy].flatMap((id) => {
    const r = rows.find((x) => x.id === id);
    if (!r?.load) return [];
    const cpu = r.load.serverCpuMsPerRequest === undefined ? '-' : `${Math.round(r.load.serverCpuMsPerRequest * 1000)} µs`;
    return [`added  ${r.label}: p50 ${ms(r.load.p50Ms - direct.p50Ms)}, p99 ${ms(r.load.p99Ms - direct.p99Ms)}, its CPU per request ${cpu}`];
  });
}
