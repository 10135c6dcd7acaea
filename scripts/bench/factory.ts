import path from 'node:path';
import { decodeJwt, decodeProtectedHeader, type JWTHeaderParameters, type JWTPayload } from 'jose';
import type { Algorithm } from './args.js';
import { freePort } from '../../lib/ports.js';
import { launch, type Launched } from './launch.js';
import type { LoadTarget } from './load.js';
import { PEER_AUDIENCE } from './peer-client.js';

/** Claims every issuance request of the bench sends: what a service asks for a peer call. */
export const ISSUE_CLAIMS = { aud: PEER_AUDIENCE, scope: 'read write' } as const;
export const ISSUE_BODY = JSON.stringify(ISSUE_CLAIMS);

/** A key created in the factory for the bench, and one token it issued with it. */
export interface BenchKey {
  keyId: string;
  alg: Algorithm;
  token: string;
  header: JWTHeaderParameters;
  payload: JWTPayload;
}

export interface FactorySettings {
  keysDir: string;
  logLevel: string;
  workers: number | undefined;
  logFile: string;
  nodeArgs?: string[];
  /** More settings, e.g. OIDC_CONFIG for the factory's own client_credentials row. */
  env?: Record<string, string>;
}

/**
 * Starts the factory as `npm run jwt-factory` would, with the settings a user passes through
 * the environment: a free port, the bench's temporary key store, the chosen log level.
 */
export async function startFactory(settings: FactorySettings): Promise<Launched> {
  // Above info the "listening" line is not logged: readiness is then GET /readyz on a port
  // chosen up front.
  const quiet = ['warn', 'error', 'fatal', 'silent'].includes(settings.logLevel);
  const port = quiet ? await freePort() : 0;
  return launch('jwt-factory/main.ts', {
    env: {
      PORT: String(port),
      HOST: '127.0.0.1',
      KEYS_DIR: settings.keysDir,
      LOG_LEVEL: settings.logLevel,
      ...(settings.workers ? { WORKERS: String(settings.workers) } : {}),
      ...settings.env,
    },
    logFile: settings.logFile,
    nodeArgs: settings.nodeArgs,
    ...(quiet ? { readyPort: port } : {}),
  });
}

async function call(url: string, init: RequestInit): Promise<string> {
  const res = await fetch(url, init);
  const body = await res.text();
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${new URL(url).pathname} answered ${res.status}: ${body.slice(0, 300)}`);
  return body;
}

/** Creates `keyId` with `alg` through the factory's API and issues one token with it. */
export async function prepareKey(baseUrl: string, keyId: string, alg: Algorithm): Promise<BenchKey> {
  await call(`${baseUrl}/keys/${encodeURIComponent(keyId)}?alg=${alg}`, { method: 'POST' });
  const token = (await call(`${baseUrl}/issueToken/${encodeURIComponent(keyId)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: ISSUE_BODY,
  })).trim();
  const header = decodeProtectedHeader(token) as JWTHeaderParameters;
  if (header.alg !== alg) throw new Error(`the factory signed ${keyId} with ${header.alg}, not ${alg}`);
  return { keyId, alg, token, header, payload: decodeJwt(token) };
}

/** POST /issueToken/:keyId with the bench's claims. */
export const issueTarget = (baseUrl: string, key: BenchKey): LoadTarget => ({
  url: `${baseUrl}/issueToken/${encodeURIComponent(key.keyId)}`,
  method: 'POST',
  body: ISSUE_BODY,
});

/** POST /verify/:keyId with a valid token, its audience and subject. */
export const verifyTarget = (baseUrl: string, key: BenchKey): LoadTarget => ({
  url: `${baseUrl}/verify/${encodeURIComponent(key.keyId)}`,
  method: 'POST',
  body: JSON.stringify({ token: key.token, aud: ISSUE_CLAIMS.aud, sub: key.payload.sub }),
});

/** The bench's key id for an algorithm ("bench-rs256"). */
export const benchKeyId = (alg: Algorithm) => `bench-${alg.toLowerCase()}`;

/** Paths inside the bench's temporary folder. */
export const tempPaths = (dir: string) => ({
  keysDir: path.join(dir, 'keys'),
  factoryLog: path.join(dir, 'factory.log'),
});
