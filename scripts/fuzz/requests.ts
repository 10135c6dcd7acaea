import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import type { RawRequest } from './send.js';

/**
 * The fuzzer's requests: fast-check arbitraries for what a hostile or broken client sends to
 * each server of the suite. Shaped like the real routes (so most requests reach a handler)
 * and bent in every way a parser can meet: bad percent-encoding, wrong or lying
 * Content-Encoding and charset, deep JSON, malformed forms, forged tokens, hostile YAML.
 */

/** Which server a request is for: the factory, a service, or the mesh gateway. */
export type Target = 'factory' | 'service' | 'gateway';

/** What the fuzzer learnt from the running suite before it starts: names that exist, a token that verifies. */
export interface FuzzContext {
  /** keyIds that exist (the fuzz creates no others, so a long run does not fill the disk). */
  keyIds: readonly string[];
  /** A token the factory issued: mutated forms of it reach the verifiers' deep paths. */
  token: string;
}

const enc = (s: string) => encodeURIComponent(s);

/** Percent-encodings that are not UTF-8 or not encodings at all (URIError in decodeURIComponent). */
const BAD_ESCAPES = ['%ff%fe', '%C0%AE%C0%AE', '%', '%zz', '%e2%82', '%ed%a0%80', '%%', '%2e%2e', '..', '.'];

/** A path segment where a keyId goes: a known one most of the time, else something invalid. */
const segment = (ctx: FuzzContext) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...ctx.keyIds) },
    { weight: 3, arbitrary: fc.constantFrom(...BAD_ESCAPES) },
    { weight: 2, arbitrary: fc.string({ maxLength: 80 }).map(enc) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map(enc) },
    { weight: 1, arbitrary: fc.integer({ min: 65, max: 300 }).map((n) => 'k'.repeat(n)) },
  );

/** A query string: the routes' own parameters with good and bad values, or garbage. */
const query = fc.oneof(
  { weight: 4, arbitrary: fc.constant('') },
  {
    weight: 4,
    arbitrary: fc
      .array(
        fc.tuple(
          fc.constantFrom('ttl', 'variant', 'expired', 'format', 'alg', 'publishAhead', 'a', 'ttl[]', '__proto__'),
          fc.oneof(fc.constantFrom('1', '0', '-1', '1e9', 'json', 'text', 'RS256', 'HS256', 'none', 'oversize', 'true', '', '99999999999999999999'), fc.string({ maxLength: 20 }).map(enc)),
        ),
        { maxLength: 4 },
      )
      .map((pairs) => (pairs.length ? `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}` : '')),
  },
  { weight: 1, arbitrary: fc.constantFrom(...BAD_ESCAPES).map((e) => `?ttl=${e}&${e}=1`) },
);

/** A route of one target, with its usual method. */
function routes(target: Target, ctx: FuzzContext): fc.Arbitrary<{ method: string; path: string }> {
  const k = segment(ctx);
  const get = (path: string) => ({ method: 'GET', path });
  const post = (path: string) => ({ method: 'POST', path });
  const any = fc.oneof(fc.string({ maxLength: 40 }).map((s) => get(`/${enc(s)}`)), fc.constantFrom(...BAD_ESCAPES).map((e) => get(`/${e}`)));
  if (target === 'factory') {
    return fc.oneof(
      fc.constantFrom(get('/healthz'), get('/readyz'), get('/.well-known/jwks.json'), get('/.well-known/openid-configuration'), get('/utils/keys'), post('/utils/dump'), post('/dump')),
      k.map((id) => get(`/keys/${id}`)),
      k.map((id) => post(`/keys/${id}`)),
      k.map((id) => post(`/keys/${id}/rotate`)),
      k.map((id) => get(`/keys/${id}/jwks.json`)),
      k.map((id) => get(`/utils/publicKey/${id}`)),
      k.map((id) => post(`/issueToken/${id}`)),
      k.map((id) => post(`/verify/${id}`)),
      fc.constant(post('/mesh/evaluate')),
      any,
    );
  }
  if (target === 'service') {
    return fc.oneof(
      fc.constantFrom(get('/hello'), get('/healthz'), get('/.well-known/jwks.json'), post('/gen-keys')),
      fc.integer({ min: 1, max: 4 }).map((n) => get(`/scenario${n}-server`)),
      fc.integer({ min: 1, max: 4 }).map((n) => get(`/scenario${n}`)),
      any,
    );
  }
  return fc.oneof(fc.constantFrom(get('/'), get('/hello'), get('/healthz'), post('/anything')), any);
}

/** A JWT-shaped string: the real token, a mutation of it, or a forgery. */
export const tokens = (ctx: FuzzContext) => {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const [h, p, s] = ctx.token.split('.') as [string, string, string];
  return fc.oneof(
    fc.constant(ctx.token),
    fc.constant(`${b64({ alg: 'none', typ: 'JWT' })}.${p}.`),
    fc.constant(`${b64({ alg: 'HS256', kid: 'x' })}.${p}.${s}`),
    fc.jsonValue({ maxDepth: 3 }).map((payload) => `${h}.${b64(payload)}.${s}`),
    fc.record({ alg: fc.constantFrom('RS256', 'ES256', 'EdDSA', 'PS256', 'none', 'HS256', 'A256GCM'), kid: fc.string({ maxLength: 20 }), jku: fc.constant('http://127.0.0.1:1/') }).map((hd) => `${b64(hd)}.${p}.${s}`),
    fc.string({ maxLength: 60 }),
    fc.array(fc.base64String({ maxLength: 40 }), { minLength: 1, maxLength: 6 }).map((parts) => parts.join('.')),
    fc.integer({ min: 5_000, max: 60_000 }).map((n) => `${h}.${'A'.repeat(n)}.${s}`),
  );
};

/** Istio objects as YAML text, valid and hostile: alias bombs, unresolved aliases, regexp-looking values. */
export const policyYaml = fc.oneof(
  fc.constant('a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n'),
  fc.constant('apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: *missing\n'),
  fc.constant('x: !!binary AAAA\n: : :\n---\n- [\n'),
  fc
    .record({
      field: fc.constantFrom('namespaces', 'principals', 'notNamespaces', 'serviceAccounts', 'requestPrincipals'),
      value: fc.oneof(fc.constantFrom('(a+)+b', '(', '[', '*', '*(.*)*', 'a{1,99999}', '\\', '(?<x>)', '*/*'), fc.string({ maxLength: 20 })),
    })
    .map(
      ({ field, value }) =>
        `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: jwt-suite}\nspec:\n  rules:\n  - from:\n    - source:\n        ${field}: [${JSON.stringify(value)}]\n`,
    ),
  fc
    .record({ path: fc.oneof(fc.constantFrom('/{**}/{**}/{**}/x', '/{*}/a', '/(a+)+', '*'), fc.string({ maxLength: 20 })), method: fc.string({ maxLength: 8 }) })
    .map(({ path, method }) => `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - to:\n    - operation: {paths: [${JSON.stringify(path)}], methods: [${JSON.stringify(method)}]}\n`),
  fc.string({ maxLength: 200 }),
);

/** A body for POST /mesh/evaluate: sometimes valid, with a long principal against every pattern. */
const meshBody = (ctx: FuzzContext) =>
  fc
    .record({
      yaml: policyYaml,
      principal: fc.oneof(fc.constant('cluster.local/ns/jwt-suite/sa/servicea'), fc.integer({ min: 10, max: 10_000 }).map((n) => `cluster.local/ns/${'a'.repeat(n)}`)),
      path: fc.oneof(fc.constant('/'), fc.string({ maxLength: 30 }).map((s) => `/${s}`), fc.integer({ min: 100, max: 5000 }).map((n) => '/'.repeat(n))),
      token: tokens(ctx),
      now: fc.oneof(fc.constant(undefined), fc.constantFrom('2026-01-01T00:00:00Z', 'not a date', '')),
    })
    .map(({ yaml, principal, path, token, now }) => ({ yaml, now, request: { method: 'GET', path, sourcePrincipal: principal, headers: { authorization: `Bearer ${token}` } } }));

/** Nesting deep enough to overflow a recursive walk: `[[[...]]]` or `{"a":{"a":...}}`. */
const deepJson = fc.record({ depth: fc.integer({ min: 100, max: 30_000 }), object: fc.boolean() }).map(({ depth, object }) =>
  object ? `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}` : `${'['.repeat(depth)}${']'.repeat(depth)}`,
);

/** The JSON a route expects, or near it. */
const jsonBody = (target: Target, ctx: FuzzContext) =>
  fc.oneof(
    fc.dictionary(fc.constantFrom('sub', 'aud', 'exp', 'iat', 'nbf', 'iss', 'jti', 'scope', 'role', 'x'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }),
    fc.record({ token: tokens(ctx), aud: fc.oneof(fc.string({ maxLength: 10 }), fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }), fc.constant('serviceb')), sub: fc.oneof(fc.string({ maxLength: 10 }), fc.constant('fuzz')) }),
    target === 'factory' ? meshBody(ctx) : fc.constant({}),
    fc.jsonValue({ maxDepth: 4 }),
  );

/** Content-Type values: right, wrong, with unknown or hostile charsets. */
const contentTypes = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'application/json; charset=nope-42',
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded; charset=klingon',
  'text/plain',
  'text/plain; charset=ebcdic',
  'multipart/form-data; boundary=x',
  'application/*+json',
  ';;;',
  '',
);

/** A body and the headers that describe (or misdescribe) it. */
function bodies(target: Target, ctx: FuzzContext): fc.Arbitrary<{ headers: Array<[string, string]>; body: Buffer }> {
  const text = fc.oneof(
    { weight: 5, arbitrary: jsonBody(target, ctx).map((v) => JSON.stringify(v) ?? 'null') },
    { weight: 2, arbitrary: deepJson },
    { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
    { weight: 1, arbitrary: fc.constantFrom('a=%ff&b=%zz', 'a[b][c][d][e][f][g]=1&a=2', '=&&==&%', `${'a[]='.repeat(2000)}`, '{"a":') },
    { weight: 1, arbitrary: fc.integer({ min: 90_000, max: 300_000 }).map((n) => JSON.stringify({ pad: 'x'.repeat(n) })) },
  );
  const encoded = fc.record({ text, encoding: fc.constantFrom(undefined, undefined, undefined, 'gzip', 'gzip-lie', 'deflate-lie', 'br-lie', 'identity', 'x-bogus', 'gzip, gzip') });
  return fc.record({ contentType: contentTypes, encoded, noBody: fc.boolean() }).map(({ contentType, encoded: { text, encoding }, noBody }) => {
    if (noBody) return { headers: [], body: Buffer.alloc(0) };
    const headers: Array<[string, string]> = contentType ? [['Content-Type', contentType]] : [];
    let body = Buffer.from(text);
    if (encoding === 'gzip') body = gzipSync(body);
    if (encoding !== undefined) headers.push(['Content-Encoding', encoding.replace(/-lie$/, '')]);
    return { headers, body };
  });
}

/** Headers besides the body's: Accept, a Bearer token, odd extras. */
const extraHeaders = (ctx: FuzzContext) =>
  fc
    .record({
      accept: fc.constantFrom(undefined, 'application/json', 'text/plain', '*/*', 'application/json, text/plain', 'x/y;q=nope'),
      auth: fc.oneof(fc.constant(undefined), tokens(ctx).map((t) => `Bearer ${t}`), fc.constantFrom('Bearer', 'Basic Zm9vOmJhcg==', 'bearer  a b c')),
      other: fc.array(fc.tuple(fc.constantFrom('X-Forwarded-For', 'If-None-Match', 'Cookie', 'X-Fuzz', 'Expect', 'Range'), fc.stringMatching(/^[\x20-\x7e]{0,60}$/)), { maxLength: 3 }),
    })
    .map(({ accept, auth, other }) => [...(accept ? [['Accept', accept] as [string, string]] : []), ...(auth ? [['Authorization', auth] as [string, string]] : []), ...other]);

/** One fuzzed request for `target`. */
export function requests(target: Target, ctx: FuzzContext): fc.Arbitrary<RawRequest> {
  return fc
    .record({
      route: routes(target, ctx),
      query,
      otherMethod: fc.option(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'FOO'), { freq: 8 }),
      body: bodies(target, ctx),
      extra: extraHeaders(ctx),
    })
    .map(({ route, query, otherMethod, body, extra }) => ({
      method: otherMethod ?? route.method,
      target: route.path + query,
      headers: [...body.headers, ...extra],
      body: body.body,
    }));
}
