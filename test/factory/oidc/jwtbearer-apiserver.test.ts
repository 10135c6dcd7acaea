import { createServer, type Server } from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificatePaths, ensureCertificates, loadServerTls } from '../../../lib/certs.js';
import { freePort } from '../../../lib/ports.js';
import { parseOidcConfig } from '../../../jwt-factory/oidc/config.js';
import { standInCluster, writeTokenFile, type StandInCluster } from '../../helpers/kubernetes.js';
import { claimsOf, makeOidcFactory } from './harness.js';

/**
 * A trusted issuer whose jwks_uri is a Kubernetes API server's /openid/v1/jwks: served over TLS
 * with the cluster's own CA, and readable only with a service-account token that RBAC allows
 * (system:service-account-issuer-discovery). The stand-in API server here answers 401 without
 * a token and 403 for any token but the one it was told to accept, as the real one does.
 */

const GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

let dir: string;
let cluster: StandInCluster;
let server: Server;
let accepted = 'factory-sa-token-1';
let reads = 0;
let jwksUri: string;
let caFile: string;
let tokenFile: string;
let f: Awaited<ReturnType<typeof makeOidcFactory>>;

const yaml = (extra: string) => `clients:
  - client_id: servicea
    token_endpoint_auth_method: none
    grant_types: [${GRANT}]
    audiences: [serviceb]
trusted_issuers:
  - issuer: ${cluster.issuer}
    jwks_uri: ${jwksUri}
    audience: jwt-factory
    subjects:
      system:serviceaccount:jwt-suite:servicea: servicea
${extra}`;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'jwt-bearer-apiserver-'));
  cluster = await standInCluster();
  await ensureCertificates(path.join(dir, 'pki'), { services: ['kubernetes'] });
  caFile = certificatePaths(path.join(dir, 'pki'), 'kubernetes').caPath;
  const tls = await loadServerTls(path.join(dir, 'pki'), 'kubernetes');
  server = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    reads += 1;
    const auth = req.headers.authorization;
    if (req.url !== '/openid/v1/jwks') return res.writeHead(404).end();
    if (auth === undefined) return res.writeHead(401, { 'content-type': 'application/json' }).end('{"kind":"Status","code":401}');
    if (auth !== `Bearer ${accepted}`) return res.writeHead(403, { 'content-type': 'application/json' }).end('{"kind":"Status","code":403}');
    res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify(cluster.jwks));
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  jwksUri = `https://127.0.0.1:${port}/openid/v1/jwks`;
  tokenFile = path.join(dir, 'token');
  await writeTokenFile(tokenFile, accepted);
  f = await makeOidcFactory({ yaml: yaml(`    jwks_ca_file: ${caFile}\n    jwks_token_file: ${tokenFile}\n`) });
});
afterAll(async () => {
  await f?.cleanup();
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

const grant = async () =>
  request(f.app)
    .post('/token')
    .type('form')
    .send({ grant_type: GRANT, assertion: await cluster.token({ namespace: 'jwt-suite', serviceAccount: 'servicea', audience: 'jwt-factory', now: f.time.clock() }) });

describe('trusted_issuers jwks_uri with jwks_ca_file and jwks_token_file (a Kubernetes API server)', () => {
  it('reads the JWKS over TLS with the cluster CA and the bearer token of the file, and grants', async () => {
    const res = await grant();
    expect(res.status).toBe(200);
    expect(claimsOf(res.body.access_token)).toMatchObject({ sub: 'servicea', aud: 'serviceb' });
    expect(reads).toBe(1);
  });

  it('re-reads the token file on the next fetch, after the kubelet rotated it', async () => {
    accepted = 'factory-sa-token-2';
    await writeTokenFile(tokenFile, accepted);
    f.time.advance(301_000);
    expect((await grant()).status).toBe(200);
    expect(reads).toBe(2);
  });

  it('answers invalid_grant, never a 500, when the API server refuses the token (no RBAC binding) or its certificate is not from the CA', async () => {
    const refused = await makeOidcFactory({ yaml: yaml(`    jwks_ca_file: ${caFile}\n    jwks_token_file: ${path.join(dir, 'pki', 'kubernetes.pem')}\n`) });
    try {
      const res = await request(refused.app)
        .post('/token')
        .type('form')
        .send({ grant_type: GRANT, assertion: await cluster.token({ namespace: 'jwt-suite', serviceAccount: 'servicea', audience: 'jwt-factory', now: refused.time.clock() }) });
      expect([res.status, res.body.error]).toEqual([400, 'invalid_grant']);
      expect(res.body.error_description).toBe(`The keys of ${cluster.issuer} could not be read`);
    } finally {
      await refused.cleanup();
    }
    // Another CA (a fresh one) does not vouch for the server: TLS verification stays on.
    await ensureCertificates(path.join(dir, 'other-pki'), { services: ['x'] });
    const untrusted = await makeOidcFactory({ yaml: yaml(`    jwks_ca_file: ${certificatePaths(path.join(dir, 'other-pki'), 'x').caPath}\n    jwks_token_file: ${tokenFile}\n`) });
    try {
      const before = reads;
      const res = await request(untrusted.app)
        .post('/token')
        .type('form')
        .send({ grant_type: GRANT, assertion: await cluster.token({ namespace: 'jwt-suite', serviceAccount: 'servicea', audience: 'jwt-factory', now: untrusted.time.clock() }) });
      expect([res.status, res.body.error]).toEqual([400, 'invalid_grant']);
      expect(reads).toBe(before);
    } finally {
      await untrusted.cleanup();
    }
  });

  it('stops start-up on jwks_ca_file or jwks_token_file without jwks_uri, and resolves them beside the config file', () => {
    const file = `clients:\n  - client_id: servicea\n    token_endpoint_auth_method: none\n    grant_types: [${GRANT}]\ntrusted_issuers:\n  - issuer: https://k\n    audience: a\n    subjects: { s: servicea }\n`;
    expect(() => parseOidcConfig(`${file}    jwks_file: j.json\n    jwks_token_file: t\n`, 'o.yaml')).toThrow('trusted_issuers[0].jwks_uri: jwks_ca_file and jwks_token_file go with jwks_uri only');
    const parsed = parseOidcConfig(`${file}    jwks_uri: https://k/openid/v1/jwks\n    jwks_ca_file: ca.crt\n    jwks_token_file: token\n`, '/etc/oidc/o.yaml').trustedIssuers.get('https://k');
    expect([parsed?.jwksCaFile, parsed?.jwksTokenFile]).toEqual(['/etc/oidc/ca.crt', '/etc/oidc/token']);
  });
});
