import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ensureCertificates } from '../../lib/certs.js';
import { freePort } from '../../lib/ports.js';
import { launch, ROOT, type Launched } from '../bench/launch.js';
import type { FuzzContext, Target } from './requests.js';

/**
 * The suite as the fuzzer meets it: the factory, servicea and serviceb (HTTP and HTTPS, also
 * standing in for servicec), and mesh-gateway in front of serviceb with the k8s/istio rules, each a real process on a free loopback port with
 * its log in `dir`, at LOG_LEVEL=info as a user runs them (the "listening" line tells when each is up).
 */

const HOST = '127.0.0.1';

/** The running suite: a process per target (servicea stands for the services), and what the fuzz needs to know. */
export interface FuzzSuite {
  processes: Record<Target | 'serviceb', Launched>;
  context: FuzzContext;
  /** Stops every process; resolves with their exit codes (0 when each drained cleanly). */
  stop(): Promise<Array<number | null>>;
}

/** The keyIds the fuzz may use; it creates no others, so a long run does not grow the key store. */
export const FUZZ_KEY_IDS = ['servicea', 'fuzz-a', 'fuzz-b', 'fuzz-es', 'fuzz-hs'] as const;

/** Starts the suite in `dir` (keys, certificates and logs go there). */
export async function startFuzzSuite(dir: string): Promise<FuzzSuite> {
  await mkdir(dir, { recursive: true });
  const certs = path.join(dir, 'certs');
  const selfKeys = path.join(dir, 'servicea-self');
  await ensureCertificates(certs);
  const ports = { factory: await freePort(), servicea: await freePort(), serviceb: await freePort(), servicebHttps: await freePort(), gateway: await freePort() };
  const base = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info', HOST };
  const url = (port: number) => `http://${HOST}:${port}`;
  const service = {
    ...base,
    HTTPS_PORT: '',
    CERTS_DIR: certs,
    SERVICE_KEYS_DIR: selfKeys,
    PEER_KEYS_DIR: selfKeys,
    FACTORY_URL: url(ports.factory),
    SERVICEA_URL: url(ports.servicea),
    SERVICEB_URL: url(ports.serviceb),
    // serviceb stands in for servicec too: scenarios 2 and 4 then meet a wrong audience, an answer, not a 5xx.
    SERVICEC_URL: url(ports.serviceb),
    SERVICEB_HTTPS_URL: `https://localhost:${ports.servicebHttps}`,
    SERVICEC_HTTPS_URL: `https://localhost:${ports.servicebHttps}`,
  };
  const started: Launched[] = [];
  const start = async (script: string, env: Record<string, string>, name: string, args: string[] = []) => {
    const p = await launch(script, { env, args, logFile: path.join(dir, `${name}.log`), timeoutMs: 90_000 });
    started.push(p);
    return p;
  };
  try {
    const [factory, serviceb] = await Promise.all([
      start('jwt-factory/main.ts', { ...base, PORT: String(ports.factory), KEYS_DIR: path.join(dir, 'keys'), PUBLIC_URL: url(ports.factory) }, 'jwt-factory'),
      start('app/main.ts', { ...service, PORT: String(ports.serviceb), HTTPS_PORT: String(ports.servicebHttps) }, 'serviceb', ['serviceb']),
    ]);
    for (const [keyId, alg] of [['servicea', 'RS256'], ['fuzz-a', 'RS256'], ['fuzz-b', 'PS256'], ['fuzz-es', 'ES256'], ['fuzz-hs', 'HS256']]) {
      const res = await fetch(`${url(ports.factory)}/keys/${keyId}?alg=${alg}`, { method: 'POST' });
      if (!res.ok) throw new Error(`the factory answered ${res.status} creating ${keyId}`);
    }
    const token = await (await fetch(`${url(ports.factory)}/issueToken/servicea`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/plain' }, body: JSON.stringify({ aud: 'serviceb' }) })).text();
    const jwksFile = path.join(dir, 'servicea-jwks.json');
    await writeFile(jwksFile, await (await fetch(`${url(ports.factory)}/keys/servicea/jwks.json`)).text());
    const [servicea, gateway] = await Promise.all([
      start('app/main.ts', { ...service, PORT: String(ports.servicea) }, 'servicea', ['servicea']),
      start(
        'mesh/gateway-main.ts',
        base,
        'mesh-gateway',
        ['--policies', path.join(ROOT, 'k8s', 'istio'), '--upstream', url(ports.serviceb), '--port', String(ports.gateway), '--host', HOST, '--workload', 'app=serviceb', '--namespace', 'jwt-suite', '--source-principal', 'cluster.local/ns/jwt-suite/sa/servicea', '--destination-port', '3001', '--jwks-file', jwksFile],
      ),
    ]);
    await fetch(`${url(ports.servicea)}/gen-keys`, { method: 'POST' });
    return {
      processes: { factory, service: servicea, serviceb, gateway },
      context: { keyIds: FUZZ_KEY_IDS, token },
      stop: () => Promise.all(started.map((p) => p.stop(10_000))),
    };
  } catch (err) {
    await Promise.all(started.map((p) => p.stop(5000)));
    throw err;
  }
}

/**
 * The status of GET /healthz within `timeoutMs`, or 0 for no answer. The gateway forwards it to
 * serviceb under the mesh rules, so there any answer below 500 shows the gateway is alive.
 */
export async function healthStatus(port: number, timeoutMs = 5000): Promise<number> {
  try {
    const res = await fetch(`http://${HOST}:${port}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** Resident memory of a process in kB, from /proc/<pid>/status VmRSS (Linux); NaN once it has ended. */
export function rssKb(pid: number): number {
  try {
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? Number.NaN);
  } catch {
    return Number.NaN;
  }
}
