import fc from 'fast-check';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadServiceConfig } from '../../app/config.js';
import { loadFactoryConfig } from '../../jwt-factory/config.js';
import { parseOidcConfig } from '../../jwt-factory/oidc/config.js';
import { MAX_XFCC_BYTES, MAX_XFCC_ELEMENTS, parseXfcc, sidecarPeerUri, XfccError } from '../../jwt-factory/xfcc.js';
import { basic, claimsOf, ISSUER, makeOidcFactory, testConfigYaml } from './oidc/harness.js';

const FACTORY_ID = 'spiffe://cluster.local/ns/jwt-suite/sa/jwt-factory';
const SERVICEA_ID = 'spiffe://cluster.local/ns/jwt-suite/sa/servicea';
const SERVICEB_ID = 'spiffe://cluster.local/ns/jwt-suite/sa/serviceb';
const HASH = '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688';
/** The element an Istio sidecar appends (Subject, URI and DNS; an Istio certificate has an empty subject). */
const sidecarElement = (uri: string, by = FACTORY_ID) => `By=${by};Hash=${HASH};Subject="";URI=${uri}`;

const MESH_CLIENT = `  - client_id: servicea-mesh
    token_endpoint_auth_method: tls_client_auth
    tls_client_auth_san_uri: ${SERVICEA_ID}
    grant_types: [client_credentials]
    key_ids: [servicea]
    audiences: [serviceb, servicec]
`;

const errorOf = (fn: () => unknown): XfccError => {
  try {
    fn();
  } catch (err) {
    if (err instanceof XfccError) return err;
    throw err;
  }
  throw new Error('no XfccError');
};

describe('parseXfcc (Envoy x-forwarded-client-cert grammar)', () => {
  it("reads Envoy's documented example: keys case-insensitive, a quoted Subject with , and =", () => {
    const [element] = parseXfcc(`By=http://frontend.lyft.com;Hash=${HASH};Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com`);
    expect(element).toEqual({ by: ['http://frontend.lyft.com'], hash: [HASH], cert: [], chain: [], subject: ['/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client'], uri: ['http://testclient.lyft.com'], dns: [] });
    expect(parseXfcc('by=a;uri=b;dns=c.example;DNS=d.example')[0]).toMatchObject({ by: ['a'], uri: ['b'], dns: ['c.example', 'd.example'] });
  });

  it('splits elements on commas outside quotes and unescapes \\" inside them', () => {
    const elements = parseXfcc(`By=spiffe://a;Subject="CN=x, O=\\"q\\";y";URI=spiffe://b,${sidecarElement(SERVICEA_ID)}`);
    expect(elements).toHaveLength(2);
    expect(elements[0]!.subject).toEqual(['CN=x, O="q";y']);
    expect(elements[1]!.uri).toEqual([SERVICEA_ID]);
  });

  it.each([
    ['an unterminated quote', 'By=a;Subject="CN=x', 'malformed'],
    ['text after a closing quote', 'By=a;Subject="x"y;URI=b', 'malformed'],
    ['a pair without =', 'By=a;URI', 'malformed'],
    ['an empty element', `${sidecarElement(SERVICEA_ID)},`, 'malformed'],
    ['a trailing ;', 'By=a;', 'malformed'],
    ['an unquoted quote in a value', 'By=a;URI=b"c', 'malformed'],
    ['an unquoted = in a value', 'By=a;URI=b=c', 'malformed'],
    ['an unknown key', 'By=a;Certificate=b', 'unknown_key'],
    ['the empty string', '', 'malformed'],
  ])('refuses %s', (_, header, reason) => {
    expect(errorOf(() => parseXfcc(header)).reason).toBe(reason);
  });

  it(`refuses more than ${MAX_XFCC_ELEMENTS} elements and more than ${MAX_XFCC_BYTES} bytes`, () => {
    expect(errorOf(() => parseXfcc(Array.from({ length: MAX_XFCC_ELEMENTS + 1 }, () => 'URI=a').join(','))).reason).toBe('too_many_elements');
    expect(parseXfcc(Array.from({ length: MAX_XFCC_ELEMENTS }, () => 'URI=a').join(','))).toHaveLength(MAX_XFCC_ELEMENTS);
    expect(errorOf(() => parseXfcc(`URI="${'x'.repeat(MAX_XFCC_BYTES)}"`)).reason).toBe('too_large');
  });

  it('round-trips any element Envoy could write (property)', () => {
    const value = fc.string({ maxLength: 40 });
    const element = fc.record({ by: fc.array(value, { maxLength: 2 }), subject: fc.array(value, { maxLength: 1 }), uri: fc.array(value, { maxLength: 3 }), dns: fc.array(value, { maxLength: 2 }) });
    // Every value quoted, its quotes escaped, as Envoy writes a Subject.
    const quote = (v: string) => `"${v.replace(/"/g, '\\"')}"`;
    const render = (e: { by: string[]; subject: string[]; uri: string[]; dns: string[] }) =>
      [...e.by.map((v) => `By=${quote(v)}`), ...e.subject.map((v) => `Subject=${quote(v)}`), ...e.uri.map((v) => `URI=${quote(v)}`), ...e.dns.map((v) => `DNS=${quote(v)}`)].join(';');
    fc.assert(
      fc.property(fc.array(element.filter((e) => e.by.length + e.subject.length + e.uri.length + e.dns.length > 0), { minLength: 1, maxLength: MAX_XFCC_ELEMENTS }), (elements) => {
        const clean = elements.map((e) => ({ by: e.by.map(noEscape), subject: e.subject.map(noEscape), uri: e.uri.map(noEscape), dns: e.dns.map(noEscape) }));
        const parsed = parseXfcc(clean.map(render).join(','));
        expect(parsed.map((p) => ({ by: p.by, subject: p.subject, uri: p.uri, dns: p.dns }))).toEqual(clean);
      }),
      { numRuns: 300 },
    );
  });

  it('answers any string with elements or an XfccError, never another exception (property)', () => {
    const alphabet = fc.constantFrom('B', 'y', '=', ';', ',', '"', '\\', 'U', 'R', 'I', 'a', ' ', ':', '/');
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.array(alphabet, { maxLength: 300 }).map((cs) => cs.join(''))), (header) => {
        try {
          parseXfcc(header);
        } catch (err) {
          expect(err).toBeInstanceOf(XfccError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

/** A value ending in a backslash would end in `\"`, read as an escaped quote: Envoy's grammar cannot carry it, and no certificate name ends so. */
function noEscape(v: string): string {
  return v.replace(/\\+$/, '');
}

describe('sidecarPeerUri (the last element, written by our own sidecar)', () => {
  it("answers the URI of the last element when its By is the factory's id, ignoring what the caller wrote before", () => {
    expect(sidecarPeerUri(sidecarElement(SERVICEA_ID), FACTORY_ID)).toBe(SERVICEA_ID);
    // A caller behind APPEND_FORWARD writes a first element claiming servicea; the sidecar's own says serviceb.
    expect(sidecarPeerUri(`${sidecarElement(SERVICEA_ID)},${sidecarElement(SERVICEB_ID)}`, FACTORY_ID)).toBe(SERVICEB_ID);
  });

  it.each([
    ['a last element written by another proxy', `${sidecarElement(SERVICEA_ID)},${sidecarElement(SERVICEA_ID, 'spiffe://cluster.local/ns/other/sa/gateway')}`, 'not_our_sidecar'],
    ['a last element without By', `${sidecarElement(SERVICEA_ID)},URI=${SERVICEA_ID}`, 'not_our_sidecar'],
    ['two By in the last element', `By=${FACTORY_ID};By=${FACTORY_ID};URI=${SERVICEA_ID}`, 'not_our_sidecar'],
    ['no URI SAN', `By=${FACTORY_ID};Hash=${HASH};DNS=servicea.example`, 'no_uri'],
    ['several URI SANs', `By=${FACTORY_ID};URI=${SERVICEA_ID};URI=${SERVICEB_ID}`, 'several_uris'],
  ])('refuses %s', (_, header, reason) => {
    expect(errorOf(() => sidecarPeerUri(header, FACTORY_ID)).reason).toBe(reason);
  });
});

describe('TRUST_XFCC and XFCC_BY settings', () => {
  const env = { OIDC_CONFIG: 'x.yaml' };
  it('default to off; TRUST_XFCC=true needs XFCC_BY, a SPIFFE id, and OIDC_CONFIG', () => {
    expect(loadFactoryConfig(env).TRUST_XFCC).toBe(false);
    expect(loadFactoryConfig({ ...env, TRUST_XFCC: 'true', XFCC_BY: FACTORY_ID })).toMatchObject({ TRUST_XFCC: true, XFCC_BY: FACTORY_ID });
    expect(() => loadFactoryConfig({ ...env, TRUST_XFCC: 'true' })).toThrow(/XFCC_BY.*required with TRUST_XFCC=true/);
    expect(() => loadFactoryConfig({ ...env, TRUST_XFCC: 'true', XFCC_BY: 'https://jwt-factory/' })).toThrow(/XFCC_BY.*SPIFFE id/);
    expect(() => loadFactoryConfig({ ...env, XFCC_BY: FACTORY_ID })).toThrow(/XFCC_BY.*only with TRUST_XFCC=true/);
    expect(() => loadFactoryConfig({ TRUST_XFCC: 'true', XFCC_BY: FACTORY_ID })).toThrow(/TRUST_XFCC.*needs OIDC_CONFIG/);
  });
});

describe("servicea's OIDC_CLIENT_AUTH (its side of the exchange)", () => {
  it('defaults to client_secret_basic; tls_client_auth takes no OIDC_CLIENT_SECRET', () => {
    expect(loadServiceConfig('servicea', {}).oidcClient).toEqual({ id: 'servicea', secret: undefined, method: 'client_secret_basic' });
    expect(loadServiceConfig('servicea', { OIDC_CLIENT_AUTH: 'tls_client_auth' }).oidcClient.method).toBe('tls_client_auth');
    expect(() => loadServiceConfig('servicea', { OIDC_CLIENT_AUTH: 'tls_client_auth', OIDC_CLIENT_SECRET: 's' })).toThrow(/OIDC_CLIENT_SECRET.*not used with OIDC_CLIENT_AUTH=tls_client_auth/);
    expect(() => loadServiceConfig('servicea', { OIDC_CLIENT_AUTH: 'private_key_jwt' })).toThrow(/OIDC_CLIENT_AUTH.*client_secret_basic or tls_client_auth/);
  });
});

describe('OIDC_CONFIG tls_client_auth clients (RFC 8705 §2.1.2 metadata)', () => {
  it('needs tls_client_auth_san_uri, takes no secret, and refuses the SAN URI with another method', () => {
    expect(parseOidcConfig(testConfigYaml(MESH_CLIENT), 'c.yaml').clients.get('servicea-mesh')).toMatchObject({ token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: SERVICEA_ID, secret: undefined });
    expect(() => parseOidcConfig(testConfigYaml(MESH_CLIENT.replace(/ +tls_client_auth_san_uri.*\n/, '')), 'c.yaml')).toThrow(/clients\[5\]\.tls_client_auth_san_uri: is required for tls_client_auth/);
    expect(() => parseOidcConfig(testConfigYaml(`${MESH_CLIENT}    client_secret: s\n`), 'c.yaml')).toThrow(/client_secret: is not used with tls_client_auth/);
    expect(() => parseOidcConfig(testConfigYaml(MESH_CLIENT.replace('tls_client_auth\n', 'client_secret_basic\n    client_secret: s\n')), 'c.yaml')).toThrow(/tls_client_auth_san_uri: is not used with client_secret_basic/);
    expect(() => parseOidcConfig(testConfigYaml(MESH_CLIENT.replace(SERVICEA_ID, 'not a uri')), 'c.yaml')).toThrow(/tls_client_auth_san_uri: must be an absolute URI/);
  });
});

describe('a factory with TRUST_XFCC=true (behind its sidecar)', () => {
  let f: Awaited<ReturnType<typeof makeOidcFactory>>;
  beforeAll(async () => {
    f = await makeOidcFactory({ yaml: testConfigYaml(MESH_CLIENT), env: { ISSUE_AUTH: 'client', TRUST_XFCC: 'true', XFCC_BY: FACTORY_ID } });
  });
  afterAll(() => f.cleanup());
  const tokenAs = (xfcc: string | undefined, form: Record<string, string>) => {
    const req = request(f.app).post('/token').type('form');
    if (xfcc !== undefined) req.set('X-Forwarded-Client-Cert', xfcc);
    return req.send(form);
  };

  it('lists tls_client_auth in discovery', async () => {
    const res = await request(f.app).get('/.well-known/openid-configuration');
    expect(res.body.token_endpoint_auth_methods_supported).toContain('tls_client_auth');
    expect(res.body.revocation_endpoint_auth_methods_supported).toContain('tls_client_auth');
  });

  it("POST /token authenticates a tls_client_auth client by the sidecar's URI: sub = the client, no secret", async () => {
    const res = await tokenAs(`${sidecarElement(SERVICEB_ID, 'spiffe://forged')},${sidecarElement(SERVICEA_ID)}`, { grant_type: 'client_credentials', client_id: 'servicea-mesh', audience: 'serviceb' });
    expect(res.status).toBe(200);
    expect(claimsOf(res.body.access_token)).toMatchObject({ sub: 'servicea-mesh', client_id: 'servicea-mesh', aud: 'serviceb' });
  });

  it.each([
    ["another workload's certificate", sidecarElement(SERVICEB_ID), 401, 'invalid_client', /not this client's/],
    ['a forged element followed by none of our sidecar', `${sidecarElement(SERVICEA_ID)},By=spiffe://elsewhere;URI=${SERVICEA_ID}`, 401, 'invalid_client', /not written by this factory's sidecar/],
    ['no header at all', undefined, 401, 'invalid_client', /mTLS identity/],
    ['a malformed header', 'By="unterminated', 400, 'invalid_request', /malformed/],
    ['a certificate with two URI SANs', `By=${FACTORY_ID};URI=${SERVICEA_ID};URI=${SERVICEB_ID}`, 400, 'invalid_request', /several URI SANs/],
  ])('POST /token refuses %s', async (_, xfcc, status, error, description) => {
    const res = await tokenAs(xfcc, { grant_type: 'client_credentials', client_id: 'servicea-mesh' });
    expect(res.status).toBe(status);
    expect(res.type).toBe('application/json');
    expect(res.body.error).toBe(error);
    expect(res.body.error_description).toMatch(description);
  });

  it('refuses a secret offered by a tls_client_auth client, and still takes a secret client behind the sidecar', async () => {
    const secret = await tokenAs(sidecarElement(SERVICEA_ID), { grant_type: 'client_credentials', client_id: 'servicea-mesh', client_secret: 'x' });
    expect(secret.status).toBe(401);
    expect(secret.body.error_description).toMatch(/tls_client_auth, not client_secret_post/);
    const basicClient = await request(f.app).post('/token').type('form').set('Authorization', basic('servicea', 'servicea-secret')).set('X-Forwarded-Client-Cert', sidecarElement(SERVICEB_ID)).send({ grant_type: 'client_credentials' });
    expect(basicClient.status).toBe(200);
  });

  it('POST /issueToken (ISSUE_AUTH=client) issues for the keyIds of the client the certificate proves', async () => {
    const ok = await request(f.app).post('/issueToken/servicea').set('X-Forwarded-Client-Cert', sidecarElement(SERVICEA_ID)).send({ client_id: 'servicea-mesh', aud: 'servicec' });
    expect(ok.status).toBe(200);
    expect(claimsOf(ok.text.trim())).toMatchObject({ sub: 'servicea-mesh', aud: 'servicec', iss: ISSUER });
    const other = await request(f.app).post('/issueToken/servicea').set('X-Forwarded-Client-Cert', sidecarElement(SERVICEB_ID)).send({ client_id: 'servicea-mesh' });
    expect(other.status).toBe(401);
    expect(other.headers['www-authenticate']).toMatch(/Basic realm/);
    expect(JSON.stringify(other.body)).toMatch(/invalid_client/);
  });
});

describe('a factory without TRUST_XFCC refuses the header wherever it authenticates a caller', () => {
  let f: Awaited<ReturnType<typeof makeOidcFactory>>;
  beforeAll(async () => {
    f = await makeOidcFactory({ yaml: testConfigYaml(MESH_CLIENT), env: { ISSUE_AUTH: 'client' } });
  });
  afterAll(() => f.cleanup());
  const forged = sidecarElement(SERVICEA_ID);

  it('leaves tls_client_auth out of discovery', async () => {
    const res = await request(f.app).get('/.well-known/openid-configuration');
    expect(res.body.token_endpoint_auth_methods_supported).not.toContain('tls_client_auth');
    expect(res.body.token_endpoint_auth_methods_supported).toContain('client_secret_basic');
  });

  it.each([
    ['POST /token (tls_client_auth)', () => request(f.app).post('/token').type('form').send({ grant_type: 'client_credentials', client_id: 'servicea-mesh' })],
    ['POST /token (a secret client)', () => request(f.app).post('/token').type('form').set('Authorization', basic('servicea', 'servicea-secret')).send({ grant_type: 'client_credentials' })],
    ['POST /token (jwt-bearer without client authentication)', () => request(f.app).post('/token').type('form').send({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: 'a.b.c' })],
    ['POST /introspect', () => request(f.app).post('/introspect').type('form').set('Authorization', basic('servicea', 'servicea-secret')).send({ token: 'x' })],
    ['POST /revoke', () => request(f.app).post('/revoke').type('form').set('Authorization', basic('servicea', 'servicea-secret')).send({ token: 'x' })],
    ['POST /issueToken with client credentials', () => request(f.app).post('/issueToken/servicea').send({ client_id: 'servicea-mesh' })],
    ['POST /issueToken with a bearer', () => request(f.app).post('/issueToken/servicea').set('Authorization', 'Bearer abc.def.ghi').send({})],
    ['POST /keys/servicea/rotate without credentials', () => request(f.app).post('/keys/servicea/rotate')],
  ])('%s answers 400 invalid_request naming TRUST_XFCC', async (_, send) => {
    const res = await send().set('X-Forwarded-Client-Cert', forged);
    expect(res.status).toBe(400);
    expect(res.type).toBe('application/json');
    expect(typeof res.body.error === 'string' ? res.body.error : res.body.error?.code).toBe('invalid_request');
    expect(JSON.stringify(res.body)).toMatch(/TRUST_XFCC is not true/);
  });

  it('still answers public calls that authenticate nobody (JWKS, discovery) with the header', async () => {
    const res = await request(f.app).get('/.well-known/jwks.json').set('X-Forwarded-Client-Cert', forged);
    expect(res.status).toBe(200);
  });

  it('still issues with a secret when no header is sent', async () => {
    const res = await request(f.app).post('/issueToken/servicea').set('Authorization', basic('servicea', 'servicea-secret')).send({ aud: 'serviceb' });
    expect(res.status).toBe(200);
    expect(claimsOf(res.text.trim())).toMatchObject({ iss: ISSUER, sub: 'servicea' });
  });
});
