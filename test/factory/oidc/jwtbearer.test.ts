import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT, type JWTPayload } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseOidcConfig } from '../../../jwt-factory/oidc/config.js';
import { epochSeconds } from '../../../lib/jwt.js';
import { freePort } from '../../../lib/ports.js';
import { basic, claimsOf, headerOf, ISSUER, makeOidcFactory } from './harness.js';

/**
 * RFC 7523 §2.1 with a stand-in Kubernetes issuer made here: a key pair, its JWKS file, and
 * tokens with the claims a projected service-account token carries.
 */

const K8S = 'https://kubernetes.default.svc.cluster.local';
const SERVICEA_SA = 'system:serviceaccount:jwt-suite:servicea';
const GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

interface Issuer {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

async function makeIssuer(kid: string): Promise<Issuer> {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { kid, publicKey: publicKey as CryptoKey, privateKey: privateKey as CryptoKey };
}

const jwksOf = async (...issuers: Issuer[]) => ({ keys: await Promise.all(issuers.map(async (i) => ({ ...(await exportJWK(i.publicKey)), kid: i.kid, alg: 'RS256', use: 'sig' }))) });

let dir: string;
let cluster: Issuer;
let jwksFile: string;
let f: Awaited<ReturnType<typeof makeOidcFactory>>;
let jwksServer: Server;
let jwksServed: { keys: unknown[] } | undefined;
let jwksUri: string;

const yaml = (file: string, uri: string) => `clients:
  - client_id: servicea
    token_endpoint_auth_method: none
    grant_types: [${GRANT}]
    audiences: [serviceb, servicec, ${ISSUER}]
    access_token_lifetime: 300
  - client_id: serviceb
    client_secret: serviceb-secret
    grant_types: [${GRANT}]
    audiences: [servicec]
  - client_id: remote
    token_endpoint_auth_method: none
    grant_types: [${GRANT}]
    audiences: [serviceb]
trusted_issuers:
  - issuer: ${K8S}
    jwks_file: ${file}
    audience: jwt-factory
    subjects:
      ${SERVICEA_SA}: servicea
      system:serviceaccount:jwt-suite:serviceb: serviceb
  - issuer: https://remote.example
    jwks_uri: ${uri}
    audience: jwt-factory
    subjects:
      remote-sa: remote
`;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'jwt-bearer-'));
  cluster = await makeIssuer('k8s-1');
  jwksFile = path.join(dir, 'jwks.json');
  await writeFile(jwksFile, JSON.stringify(await jwksOf(cluster)));
  jwksServer = createServer((_req, res) => {
    if (!jwksServed) return res.writeHead(503).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwksServed));
  });
  const port = await freePort();
  await new Promise<void>((resolve) => jwksServer.listen(port, '127.0.0.1', resolve));
  jwksUri = `http://127.0.0.1:${port}/openid/v1/jwks`;
  f = await makeOidcFactory({ yaml: yaml(jwksFile, jwksUri) });
});
afterAll(async () => {
  await f.cleanup();
  await rm(dir, { recursive: true, force: true });
  await new Promise((resolve) => jwksServer.close(resolve));
});

/** A projected service-account token as the kubelet gets it (kubernetes.io claims included). */
function projected(signer: Issuer, overrides: JWTPayload = {}, header: Record<string, unknown> = {}) {
  const now = epochSeconds(f.time.clock());
  return new SignJWT({
    aud: ['jwt-factory'],
    exp: now + 600,
    iat: now,
    nbf: now,
    iss: K8S,
    jti: randomUUID(),
    sub: SERVICEA_SA,
    'kubernetes.io': {
      namespace: 'jwt-suite',
      node: { name: 'kind-worker', uid: randomUUID() },
      pod: { name: 'servicea-7d4b9c-x2x9q', uid: randomUUID() },
      serviceaccount: { name: 'servicea', uid: randomUUID() },
    },
    ...overrides,
  })
    .setProtectedHeader({ alg: 'RS256', kid: signer.kid, ...header })
    .sign(signer.privateKey);
}

const grant = (assertion: string, extra: Record<string, string | string[]> = {}, authorization?: string) => {
  const req = request(f.app).post('/token').type('form');
  if (authorization) req.set('Authorization', authorization);
  return req.send(new URLSearchParams([['grant_type', GRANT], ['assertion', assertion], ...Object.entries(extra).flatMap(([k, v]) => [v].flat().map((x) => [k, x] as [string, string]))]).toString());
};

const expectInvalid = (res: request.Response, error = 'invalid_grant', status = 400) => {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.body.error).toBe(error);
  expect(res.headers['cache-control']).toBe('no-store');
};

describe('POST /token with grant_type=jwt-bearer (RFC 7523)', () => {
  it("exchanges a projected service-account token for the mapped service's token: sub = servicea, signed with keyId servicea", async () => {
    const res = await grant(await projected(cluster));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 300 });
    const claims = claimsOf(res.body.access_token);
    expect(claims).toMatchObject({ iss: ISSUER, sub: 'servicea', aud: 'serviceb' });
    expect(claims.exp).toBe((claims.iat as number) + 300);
    expect(claims).not.toHaveProperty('kubernetes.io');
    const servicea = await request(f.app).get('/keys/servicea');
    expect(headerOf(res.body.access_token)).toMatchObject({ kid: servicea.body.kid, typ: 'JWT' });
    const verified = await request(f.app).post('/verify/servicea').send({ token: res.body.access_token, aud: 'serviceb', sub: 'servicea' });
    expect(verified.body.valid).toBe(true);
  });

  it("picks the aud among the service's audiences (one, or several at once), and refuses another with invalid_target", async () => {
    expect(claimsOf((await grant(await projected(cluster), { audience: 'servicec' })).body.access_token).aud).toBe('servicec');
    expect(claimsOf((await grant(await projected(cluster), { audience: ['serviceb', 'servicec'] })).body.access_token).aud).toEqual(['serviceb', 'servicec']);
    expectInvalid(await grant(await projected(cluster), { audience: 'admin-api' }), 'invalid_target');
  });

  it("answers the service's RFC 9068 access token for audience = ISSUER (the bearer /issueToken takes), and refuses ISSUER beside another audience", async () => {
    const res = await grant(await projected(cluster), { audience: ISSUER });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 300 });
    expect(res.body).not.toHaveProperty('scope');
    expect(headerOf(res.body.access_token).typ).toBe('at+jwt');
    expect(claimsOf(res.body.access_token)).toMatchObject({ iss: ISSUER, sub: 'servicea', aud: ISSUER, client_id: 'servicea' });
    const introspected = await request(f.app).post('/introspect').type('form').set('Authorization', basic('serviceb', 'serviceb-secret')).send({ token: res.body.access_token });
    expect(introspected.body).toMatchObject({ active: true, client_id: 'servicea', sub: 'servicea' });
    expectInvalid(await grant(await projected(cluster), { audience: ['serviceb', ISSUER] }), 'invalid_target');
    // A scope the service does not have is refused before the jti is spent: the same assertion still works.
    const assertion = await projected(cluster);
    expectInvalid(await grant(assertion, { audience: ISSUER, scope: 'factory:admin' }), 'invalid_scope');
    expect((await grant(assertion, { audience: ISSUER })).status).toBe(200);
  });

  it('refuses a replayed jti with invalid_grant, within the assertion lifetime', async () => {
    const assertion = await projected(cluster);
    expect((await grant(assertion)).status).toBe(200);
    expectInvalid(await grant(assertion));
  });

  it('refuses every forged assertion with 400 invalid_grant', async () => {
    const now = epochSeconds(f.time.clock());
    const stranger = await makeIssuer(cluster.kid);
    const secret = new TextEncoder().encode(await exportSPKI(cluster.publicKey));
    const forged = {
      'wrong aud': await projected(cluster, { aud: ['kubernetes.default.svc'] }),
      'expired beyond the 60 s skew': await projected(cluster, { iat: now - 700, nbf: now - 700, exp: now - 60 }),
      'not yet valid': await projected(cluster, { iat: now + 120, nbf: now + 120, exp: now + 720 }),
      'no exp': await projected(cluster, { exp: undefined }),
      'no jti': await projected(cluster, { jti: undefined }),
      'another issuer': await projected(cluster, { iss: 'https://evil.example' }),
      "another key under the cluster's kid": await projected(stranger),
      'an unknown kid': await projected(stranger, {}, { kid: 'k8s-unknown' }),
      'unmapped sub': await projected(cluster, { sub: 'system:serviceaccount:jwt-suite:intruder' }),
      'alg none': new UnsecuredJWT({ iss: K8S, sub: SERVICEA_SA, aud: 'jwt-factory', exp: now + 600, jti: randomUUID() }).encode(),
      'HS256 signed with the public key': await new SignJWT({ iss: K8S, sub: SERVICEA_SA, aud: 'jwt-factory', exp: now + 600, jti: randomUUID() }).setProtectedHeader({ alg: 'HS256', kid: cluster.kid }).sign(secret),
      'not a JWT': 'not-a-jwt',
    };
    for (const [why, assertion] of Object.entries(forged)) {
      const res = await grant(assertion);
      expect({ why, status: res.status, error: res.body.error }).toEqual({ why, status: 400, error: 'invalid_grant' });
    }
    // At the edge of the skew an expired token still passes, as Envoy's 60 s would let it.
    expect((await grant(await projected(cluster, { iat: now - 700, nbf: now - 700, exp: now - 59 }))).status).toBe(200);
  });

  it('refuses a missing assertion with invalid_request, and an authenticated client that is not the mapped service', async () => {
    const res = await request(f.app).post('/token').type('form').send({ grant_type: GRANT });
    expectInvalid(res, 'invalid_request');
    expectInvalid(await grant(await projected(cluster), {}, basic('serviceb', 'serviceb-secret')));
    const own = await grant(await projected(cluster, { sub: 'system:serviceaccount:jwt-suite:serviceb' }), { audience: 'servicec' }, basic('serviceb', 'serviceb-secret'));
    expect(own.status).toBe(200);
    expect(claimsOf(own.body.access_token)).toMatchObject({ sub: 'serviceb', aud: 'servicec' });
  });

  it('reads a rotated JWKS file when an unknown kid comes, at most every 30 s', async () => {
    const next = await makeIssuer('k8s-2');
    await writeFile(jwksFile, JSON.stringify(await jwksOf(cluster, next)));
    f.time.advance(301_000);
    expect((await grant(await projected(next))).status).toBe(200);
    const third = await makeIssuer('k8s-3');
    await writeFile(jwksFile, JSON.stringify(await jwksOf(cluster, next, third)));
    expectInvalid(await grant(await projected(third)));
    f.time.advance(31_000);
    expect((await grant(await projected(third))).status).toBe(200);
  });

  it('fetches a jwks_uri (keeping the last good keys while it fails) and answers invalid_grant while it never answered', async () => {
    const remote = await makeIssuer('remote-1');
    const assertion = (sub = 'remote-sa') => projected(remote, { iss: 'https://remote.example', sub });
    jwksServed = undefined;
    expectInvalid(await grant(await assertion()));
    jwksServed = await jwksOf(remote);
    f.time.advance(31_000);
    const ok = await grant(await assertion());
    expect(ok.status).toBe(200);
    expect(claimsOf(ok.body.access_token)).toMatchObject({ sub: 'remote', aud: 'serviceb' });
    jwksServed = undefined;
    f.time.advance(301_000);
    expect((await grant(await assertion())).status).toBe(200);
  });

  it('lists the grant in discovery', async () => {
    const res = await request(f.app).get('/.well-known/openid-configuration');
    expect(res.body.grant_types_supported).toContain(GRANT);
  });
});

describe('OIDC_CONFIG trusted_issuers', () => {
  const base = `clients:\n  - client_id: servicea\n    token_endpoint_auth_method: none\n    grant_types: [${GRANT}]\n  - client_id: webui\n    client_secret: s\n    grant_types: [client_credentials]\n`;
  it('stops start-up on a subject mapped to a client without the grant, two key sources, or none', () => {
    const issuer = (body: string) => `${base}trusted_issuers:\n  - issuer: ${K8S}\n    audience: jwt-factory\n${body}`;
    expect(() => parseOidcConfig(issuer('    jwks_file: /x.json\n    subjects: { a: webui }\n'), 'o.yaml')).toThrow(
      `Invalid setting OIDC_CONFIG: o.yaml: trusted_issuers[0].subjects.a: "webui" must be a client whose grant_types list ${GRANT}`,
    );
    expect(() => parseOidcConfig(issuer('    jwks_file: /x.json\n    jwks_uri: https://k/jwks\n    subjects: { a: servicea }\n'), 'o.yaml')).toThrow('trusted_issuers[0].jwks: needs exactly one of jwks_file, jwks or jwks_uri');
    expect(() => parseOidcConfig(issuer('    subjects: { a: servicea }\n'), 'o.yaml')).toThrow('needs exactly one of jwks_file, jwks or jwks_uri');
    expect(parseOidcConfig(issuer('    jwks_file: jwks.json\n    subjects: { a: servicea }\n'), '/etc/factory/o.yaml').trustedIssuers.get(K8S)?.jwksFile).toBe('/etc/factory/jwks.json');
  });
});
