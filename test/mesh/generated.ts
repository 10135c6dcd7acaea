import type { MeshRequest } from '../../mesh/evaluate.js';
import { HOST, ISS, ISS_B, NOW_S, type Ctx } from './cases.js';

/**
 * A seeded generator of mesh cases for the real-Envoy differential: policy sets (one or two
 * issuers with random token locations, audiences and outputs; DENY/ALLOW/CUSTOM rules over
 * paths, methods, headers, principals and claims) × requests (tokens minted at run time with
 * the case clock, in random locations, good or broken in one way). The same seed gives the
 * same cases; the tokens differ per run only in their signatures and times.
 */

/** mulberry32: a small, fast, seedable PRNG (public domain); enough to pick from lists. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const chance = (r: Rand, p: number) => r() < p;

export interface GeneratedSet {
  name: string;
  objects: unknown[];
  /** Where this set's rules read tokens (so requests can put them there). */
  locations: Location[];
}

type Location = { kind: 'bearer' } | { kind: 'header'; name: string; prefix: string } | { kind: 'param'; name: string } | { kind: 'cookie'; name: string };

export interface GeneratedCase {
  name: string;
  set: string;
  request: (c: Ctx) => Promise<MeshRequest>;
}

const meta = (kind: string, name: string) => ({ apiVersion: 'security.istio.io/v1', kind, metadata: { name, namespace: 'jwt-suite' } });
const SUBS = ['servicea', 'serviceb', 'team-blue', 'admin'];
const PATHS = ['/api', '/api/items', '/admin/users', '/public', '/items/7/detail', '/healthz'];

function jwtRule(r: Rand, c: Ctx, issuer: string, key: 'rs' | 'es'): { rule: Record<string, unknown>; locations: Location[] } {
  const rule: Record<string, unknown> = { issuer, jwks: c.jwks(c[key]) };
  const locations: Location[] = [];
  const where = pick(r, ['default', 'header', 'param', 'cookie', 'mixed'] as const);
  if (where === 'default') locations.push({ kind: 'bearer' }, { kind: 'param', name: 'access_token' });
  if (where === 'header' || where === 'mixed') {
    const prefix = pick(r, ['', 'Token ']);
    rule.fromHeaders = [{ name: 'x-jwt', ...(prefix ? { prefix } : {}) }];
    locations.push({ kind: 'header', name: 'x-jwt', prefix });
  }
  if (where === 'param' || where === 'mixed') {
    rule.fromParams = ['jwt'];
    locations.push({ kind: 'param', name: 'jwt' });
  }
  if (where === 'cookie') {
    rule.fromCookies = ['session'];
    locations.push({ kind: 'cookie', name: 'session' });
  }
  if (chance(r, 0.4)) rule.audiences = pick(r, [['serviceb'], ['https://serviceb/', 'other'], ['servicec']]);
  if (chance(r, 0.3)) rule.forwardOriginalToken = true;
  if (chance(r, 0.3)) rule.outputPayloadToHeader = 'x-payload';
  if (chance(r, 0.5)) rule.outputClaimToHeaders = [{ header: 'x-sub', claim: 'sub' }, ...(chance(r, 0.5) ? [{ header: 'x-groups', claim: 'groups' }] : []), ...(chance(r, 0.5) ? [{ header: 'x-team', claim: 'org.team' }] : [])];
  return { rule, locations };
}

function authzPolicies(r: Rand): unknown[] {
  const out: unknown[] = [];
  if (chance(r, 0.4)) {
    out.push({
      ...meta('AuthorizationPolicy', 'deny'),
      spec: { action: 'DENY', rules: [pick(r, [{ to: [{ operation: { paths: ['/admin/*'] } }] }, { when: [{ key: 'request.headers[x-debug]', values: ['*'] }] }, { to: [{ operation: { methods: ['POST'], notPaths: ['/public'] } }] }, { from: [{ source: { notRequestPrincipals: ['*'] } }], to: [{ operation: { paths: ['/api*'] } }] }])] },
    });
  }
  if (chance(r, 0.2)) {
    out.push({ ...meta('AuthorizationPolicy', 'ext'), spec: { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{ to: [{ operation: { paths: [pick(r, ['/api/*', '/healthz', '/public'])] } }] }] } });
  }
  if (chance(r, 0.6)) {
    const rules = [];
    const n = 1 + Math.floor(r() * 3);
    for (let i = 0; i < n; i++) {
      rules.push(
        pick(r, [
          { from: [{ source: { requestPrincipals: ['*'] } }] },
          { from: [{ source: { requestPrincipals: [`${ISS}/servicea`, `${ISS_B}/*`] } }], to: [{ operation: { paths: ['/api', '/api/*'] } }] },
          { from: [{ source: { requestPrincipals: ['*/team-*'] } }] },
          { to: [{ operation: { paths: ['/public', '/healthz'] } }] },
          { to: [{ operation: { paths: ['/items/{*}/detail'], methods: ['GET'] } }] },
          { when: [{ key: 'request.auth.claims[groups]', values: ['admin'] }] },
          { when: [{ key: 'request.auth.claims[scope]', values: ['read'] }], to: [{ operation: { notMethods: ['DELETE'] } }] },
          { when: [{ key: 'request.auth.claims[org][team]', values: ['blue'] }] },
          { when: [{ key: 'request.auth.audiences', values: ['serviceb'] }], to: [{ operation: { hosts: [`*.jwt-suite`] } }] },
          { from: [{ source: { notRequestPrincipals: [`${ISS}/admin`] } }], to: [{ operation: { paths: ['/admin/*'] } }] },
          { when: [{ key: 'request.headers[x-team]', values: ['blue', 'red*'] }] },
        ]),
      );
    }
    out.push({ ...meta('AuthorizationPolicy', 'allow'), spec: { rules } });
  }
  return out;
}

/** `count` policy sets from `seed`. */
export function generateSets(seed: number, count: number, c: Ctx): GeneratedSet[] {
  const r = prng(seed);
  const sets: GeneratedSet[] = [];
  for (let i = 0; i < count; i++) {
    const objects: unknown[] = [];
    const locations: Location[] = [];
    const issuers = chance(r, 0.3) ? 2 : chance(r, 0.85) ? 1 : 0;
    for (let k = 0; k < issuers; k++) {
      const { rule, locations: l } = jwtRule(r, c, k === 0 ? ISS : ISS_B, k === 0 ? 'rs' : 'es');
      objects.push({ ...meta('RequestAuthentication', `ra-${k}`), spec: { jwtRules: [rule] } });
      locations.push(...l);
    }
    objects.push(...authzPolicies(r));
    if (locations.length === 0) locations.push({ kind: 'bearer' });
    sets.push({ name: `gen-${seed}-${i}`, objects, locations });
  }
  return sets;
}

/** What a generated token looks like: good, or broken in one way. */
const TOKEN_KINDS = ['good', 'good', 'good', 'expired', 'future', 'no-exp', 'other-iss', 'issuer-b', 'unknown-kid', 'no-kid', 'wrong-aud', 'no-aud', 'tampered', 'garbage', 'es-key'] as const;

async function mint(r: Rand, c: Ctx): Promise<string> {
  const kind = pick(r, TOKEN_KINDS);
  const claims: Record<string, unknown> = { iss: ISS, sub: pick(r, SUBS), aud: pick(r, ['serviceb', ['x', 'serviceb'], 'https://serviceb/']), iat: NOW_S, exp: NOW_S + 3600 };
  if (chance(r, 0.4)) claims.groups = pick(r, [['admin'], ['dev', 'admin'], 'admin', ['dev']]);
  if (chance(r, 0.3)) claims.scope = pick(r, ['read write', 'write']);
  if (chance(r, 0.3)) claims.org = { team: pick(r, ['blue', 'red']) };
  switch (kind) {
    case 'expired':
      claims.exp = NOW_S - 600;
      break;
    case 'future':
      claims.nbf = NOW_S + 600;
      break;
    case 'no-exp':
      delete claims.exp;
      break;
    case 'other-iss':
      claims.iss = 'https://evil.example/';
      break;
    case 'issuer-b':
      claims.iss = ISS_B;
      return c.sign(claims, { key: c.es });
    case 'unknown-kid':
      return c.sign(claims, { key: c.stranger });
    case 'no-kid':
      return c.sign(claims, { header: { alg: 'RS256' } });
    case 'wrong-aud':
      claims.aud = 'servicec';
      break;
    case 'no-aud':
      delete claims.aud;
      break;
    case 'tampered': {
      const [h, , s] = (await c.sign(claims)).split('.');
      return `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: 'admin' })).toString('base64url')}.${s}`;
    }
    case 'garbage':
      return pick(r, ['not-a-jwt', 'e30.e30.c2ln', 'a.b.c']);
    case 'es-key':
      return c.sign(claims, { key: c.es });
  }
  return c.sign(claims);
}

/** `perSet` requests for each set, from `seed`. */
export function generateCases(seed: number, sets: readonly GeneratedSet[], perSet: number): GeneratedCase[] {
  const r = prng(seed ^ 0x5eed);
  const cases: GeneratedCase[] = [];
  for (const set of sets) {
    for (let i = 0; i < perSet; i++) {
      const caseSeed = Math.floor(r() * 2 ** 31);
      cases.push({
        name: `${set.name} #${i} (seed ${caseSeed})`,
        set: set.name,
        request: async (c) => {
          const q = prng(caseSeed);
          const preflight = chance(q, 0.05);
          const method = preflight ? 'OPTIONS' : pick(q, ['GET', 'GET', 'POST', 'DELETE']);
          let path = pick(q, PATHS);
          const headers: Record<string, string | string[]> = { host: chance(q, 0.8) ? HOST : 'api.example.com' };
          if (preflight) Object.assign(headers, { origin: 'https://app.example', 'access-control-request-method': 'GET' });
          if (chance(q, 0.15)) headers['x-debug'] = '1';
          if (chance(q, 0.2)) headers['x-team'] = pick(q, ['blue', 'red-1', 'green']);
          if (chance(q, 0.1)) headers['x-sub'] = 'forged';
          const tokens = chance(q, 0.15) ? 0 : chance(q, 0.9) ? 1 : 2;
          const cookies: string[] = [];
          for (let t = 0; t < tokens; t++) {
            const token = await mint(q, c);
            const loc = pick(q, set.locations);
            if (loc.kind === 'bearer') headers.authorization = `Bearer ${token}`;
            else if (loc.kind === 'header') headers[loc.name] = `${loc.prefix}${token}`;
            else if (loc.kind === 'param') path += `${path.includes('?') ? '&' : '?'}${loc.name}=${token}`;
            else cookies.push(`${loc.name}=${token}`);
          }
          if (chance(q, 0.1)) path += `${path.includes('?') ? '&' : '?'}page=2`;
          if (cookies.length) headers.cookie = ['theme=dark', ...cookies].join('; ');
          return { method, path, headers };
        },
      });
    }
  }
  return cases;
}
