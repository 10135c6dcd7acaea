import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureCertificates } from '../../lib/certs.js';
import { loadServiceConfig } from '../../app/config.js';
import { startProcess, type Started } from '../helpers/process.js';
import { standInCluster, writeTokenFile, type StandInCluster } from '../helpers/kubernetes.js';

/**
 * servicea's cluster credential with real processes: a factory with ISSUE_AUTH=client that
 * trusts a stand-in Kubernetes issuer (its JWKS in a file), serviceb as the receiver, and
 * servicea reading its projected service-account token from FACTORY_ASSERTION_FILE. servicea's
 * access token lives 12 s here, so the test can watch it expire; the checks wait for what the
 * logs say (the token's exp), never for a guessed duration.
 */

const ISSUER = 'https://jwt-factory/';
const GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const LIFETIME = 12;

let tmp: string;
let cluster: StandInCluster;
let tokenFile: string;
let factory: Started;
let servicea: Started;
let serviceb: Started;

const oidcYaml = (jwksFile: string) => `clients:
  - client_id: servicea
    token_endpoint_auth_method: none
    grant_types: [${GRANT}]
    audiences: [serviceb, servicec, ${ISSUER}]
    access_token_lifetime: ${LIFETIME}
trusted_issuers:
  - issuer: https://kubernetes.default.svc.cluster.local
    jwks_file: ${jwksFile}
    audience: jwt-factory
    subjects:
      system:serviceaccount:jwt-suite:servicea: servicea
`;

const projected = (overrides = {}) => cluster.token({ namespace: 'jwt-suite', serviceAccount: 'servicea', audience: 'jwt-factory', overrides });

/** The exchanges servicea logged: which assertion (its jti) bought which access token (its exp). */
function exchanges(): Array<{ assertionJti: string; exp: number }> {
  return servicea
    .output()
    .split('\n')
    .filter((l) => l.includes('exchanged the service-account token'))
    .map((l) => JSON.parse(l) as { assertionJti: string; exp: number });
}

/** Waits until the wall clock is past `exp` (epoch seconds), with a second to spare. */
async function pastExp(exp: number): Promise<void> {
  const ms = exp * 1000 + 1000 - Date.now();
  if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
}

async function scenario1(): Promise<{ status: number; body: any }> {
  // ?expired=1: servicea mints afresh on every call (an expired token is never cached), so each call uses its credential.
  const res = await fetch(`http://127.0.0.1:${servicea.port}/scenario1?expired=1`, { signal: AbortSignal.timeout(20_000) });
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return { status: res.status, body: await res.json() };
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'assertion-'));
  cluster = await standInCluster();
  const jwksFile = path.join(tmp, 'cluster-jwks.json');
  await writeFile(jwksFile, JSON.stringify(cluster.jwks));
  await writeFile(path.join(tmp, 'oidc.yaml'), oidcYaml(jwksFile));
  const certsDir = path.join(tmp, 'certs');
  await ensureCertificates(certsDir, { services: ['servicea', 'serviceb', 'servicec'] });
  tokenFile = path.join(tmp, 'token');
  await writeTokenFile(tokenFile, await projected());
  factory = await startProcess('jwt-factory/main.ts', {
    env: { PORT: '0', HOST: '127.0.0.1', ISSUE_AUTH: 'client', OIDC_CONFIG: path.join(tmp, 'oidc.yaml'), KEYS_DIR: path.join(tmp, 'keys'), ISSUER },
    timeoutMs: 60_000,
  });
  const factoryUrl = `http://127.0.0.1:${factory.port}`;
  serviceb = await startProcess('app/main.ts', { args: ['serviceb'], env: { PORT: '0', HTTPS_PORT: '', HOST: '127.0.0.1', CERTS_DIR: certsDir, FACTORY_URL: factoryUrl, ISSUER }, timeoutMs: 60_000 });
  servicea = await startProcess('app/main.ts', {
    args: ['servicea'],
    // FACTORY_CLIENT_SECRET= unsets the demo secret of app/.servicea.env: the token file is the only credential.
    env: { PORT: '0', HOST: '127.0.0.1', CERTS_DIR: certsDir, FACTORY_URL: factoryUrl, ISSUER, SERVICEB_URL: `http://127.0.0.1:${serviceb.port}`, FACTORY_CLIENT_SECRET: '', FACTORY_ASSERTION_FILE: tokenFile, SERVICE_KEYS_DIR: path.join(tmp, 'self') },
    timeoutMs: 60_000,
  });
}, 180_000);

afterAll(async () => {
  await Promise.all([servicea, serviceb, factory].filter(Boolean).map((p) => p.stop()));
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('servicea with FACTORY_ASSERTION_FILE against a factory with ISSUE_AUTH=client', () => {
  it('refuses FACTORY_ASSERTION_FILE beside a client secret, naming both settings', () => {
    expect(() => loadServiceConfig('servicea', { FACTORY_CLIENT_ID: 'servicea', FACTORY_CLIENT_SECRET: 's', FACTORY_ASSERTION_FILE: '/t' })).toThrow(/FACTORY_ASSERTION_FILE: give FACTORY_ASSERTION_FILE or FACTORY_CLIENT_SECRET, not both/);
    expect(loadServiceConfig('servicea', { FACTORY_CLIENT_ID: 'servicea', FACTORY_CLIENT_SECRET: '', FACTORY_ASSERTION_FILE: '/t' }).factoryCredential).toEqual({ kind: 'assertion', file: '/t' });
  });

  it('exchanges the projected token once, then mints with the access token it bought until that nears expiry', async () => {
    for (let i = 0; i < 3; i += 1) {
      const { status, body } = await scenario1();
      expect(status).toBe(200);
      // The factory minted it (serviceb asked /verify/servicea): an expired token of iss ISSUER, sub servicea.
      expect(body.serviceb).toMatchObject({ status: 403, valid: false, error: { name: 'TokenExpiredError' } });
    }
    const seen = exchanges();
    expect(seen).toHaveLength(1);
    expect(seen[0]!.assertionJti).toBe(decodeJwt(readFileSync(tokenFile, 'utf8')).jti);
    // The jti is spent: the factory refuses the same assertion from anyone else.
    const replay = await fetch(`http://127.0.0.1:${factory.port}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: GRANT, assertion: readFileSync(tokenFile, 'utf8'), audience: ISSUER }),
    });
    expect([replay.status, ((await replay.json()) as { error: string }).error]).toEqual([400, 'invalid_grant']);
  });

  it('answers 503 factory_credential_spent when its access token expired and the kubelet has not replaced the file', async () => {
    await pastExp(exchanges().at(-1)!.exp);
    const { status, body } = await scenario1();
    expect(status).toBe(503);
    expect(body.error).toMatchObject({ code: 'factory_credential_spent', dependency: 'jwt-factory' });
    expect(body.error.message).toContain(tokenFile);
  });

  it('re-reads the file rotated mid-run and exchanges the new token', async () => {
    const next = await projected();
    await writeTokenFile(tokenFile, next);
    const { status, body } = await scenario1();
    expect(status).toBe(200);
    expect(body.serviceb).toMatchObject({ status: 403, error: { name: 'TokenExpiredError' } });
    expect(exchanges().map((e) => e.assertionJti)).toEqual([expect.any(String), decodeJwt(next).jti]);
  });

  it('answers 503 factory_credential_expired, naming the file and the instant, for an expired token in the file', async () => {
    await pastExp(exchanges().at(-1)!.exp);
    const now = Math.floor(Date.now() / 1000);
    await writeTokenFile(tokenFile, await projected({ iat: now - 900, nbf: now - 900, exp: now - 300 }));
    const { status, body } = await scenario1();
    expect(status).toBe(503);
    expect(body.error.code).toBe('factory_credential_expired');
    expect(body.error.message).toMatch(new RegExp(`${tokenFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} expired at \\d{4}-\\d\\d-\\d\\dT`));
    expect(exchanges()).toHaveLength(2);
  });

  it('answers 503 factory_credential_refused with the OAuth error when the factory refuses the token (an unmapped service account)', async () => {
    await writeTokenFile(tokenFile, await cluster.token({ namespace: 'jwt-suite', serviceAccount: 'intruder', audience: 'jwt-factory' }));
    const { status, body } = await scenario1();
    expect(status).toBe(503);
    expect(body.error.code).toBe('factory_credential_refused');
    expect(body.error.message).toMatch(/invalid_grant/);
  });

  it('answers 503 factory_credential_unreadable when the file is gone, and never logs a token', async () => {
    await rm(tokenFile);
    const { status, body } = await scenario1();
    expect(status).toBe(503);
    expect(body.error.code).toBe('factory_credential_unreadable');
    expect(body.error.message).toContain('ENOENT');
    // No compact JWT (header.payload.signature) in any log line of servicea.
    expect(servicea.output()).not.toMatch(/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/);
  });
});
