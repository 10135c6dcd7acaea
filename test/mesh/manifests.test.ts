import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluate, type MeshRequest } from '../../mesh/evaluate.js';
import type { MeshPolicy } from '../../mesh/istio/policies.js';
import { loadPolicyPath } from '../../mesh/sources.js';
import { ROOT, runScript, startProcess, type Started } from '../helpers/process.js';

/**
 * The suite's own Istio overlay (k8s/istio) evaluated against tokens the real factory issues:
 * what the serviceb sidecar decides for servicea's calls. The factory runs as a real process;
 * its per-key JWKS is supplied under the jwksUri the RequestAuthentication names.
 */


let factory: Started;
let keysDir: string;
let policies: MeshPolicy[];
let jwksUri: string;
let jwks: unknown;
let base: string;

const SERVICEB = { namespace: 'jwt-suite', labels: { app: 'serviceb' } };
const FROM_SERVICEA = 'cluster.local/ns/jwt-suite/sa/servicea';

async function issue(keyId: string, claims: Record<string, unknown>, query = ''): Promise<string> {
  const res = await fetch(`${base}/issueToken/${keyId}${query}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(claims) });
  expect(res.status).toBe(200);
  return res.text();
}

function callServiceb(token: string | undefined, extra: Partial<MeshRequest> = {}): MeshRequest {
  return {
    method: 'GET',
    path: '/scenario1-server',
    headers: { host: 'serviceb.jwt-suite.svc.cluster.local:3001', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    port: 3001,
    sourcePrincipal: FROM_SERVICEA,
    ...extra,
  };
}

const decide = (request: MeshRequest) => evaluate({ policies, request, jwks: { [jwksUri]: jwks }, now: new Date(), workload: SERVICEB });

beforeAll(async () => {
  keysDir = await mkdtemp(path.join(tmpdir(), 'mesh-factory-keys-'));
  factory = await startProcess('jwt-factory/main.ts', { env: { PORT: '0', HOST: '127.0.0.1', KEYS_DIR: keysDir } });
  base = `http://127.0.0.1:${factory.port}`;
  policies = await loadPolicyPath(path.join(ROOT, 'k8s', 'istio'));
  const ra = policies.find((p) => p.kind === 'RequestAuthentication' && p.name === 'serviceb-jwt');
  if (ra?.kind !== 'RequestAuthentication') throw new Error('k8s/istio has no serviceb-jwt RequestAuthentication');
  jwksUri = ra.jwtRules[0]!.jwksUri!;
  await issue('servicea', { aud: 'serviceb' }); // creates servicea's key
  jwks = await (await fetch(`${base}/keys/servicea/jwks.json`)).json();
});

afterAll(async () => {
  await factory?.stop();
  if (keysDir) await rm(keysDir, { recursive: true, force: true });
});

describe('k8s/istio with factory tokens, at the serviceb sidecar', () => {
  it('servicea\'s token for audience serviceb reaches serviceb (200), token forwarded', async () => {
    const v = await decide(callServiceb(await issue('servicea', { aud: 'serviceb' })));
    expect(v.status).toBe(200);
    expect(v.principal).toBe('https://jwt-factory//servicea');
    expect(v.decidedBy).toBe('AuthorizationPolicy ALLOW ns[jwt-suite]-policy[serviceb-allow-servicea]-rule[0]');
    // serviceb-jwt sets forwardOriginalToken: the app checks the token itself.
    expect(String(v.upstreamHeaders.authorization)).toMatch(/^Bearer ey/);
  });

  it('no token: RequestAuthentication lets it pass, the ALLOW policy does not (403)', async () => {
    const v = await decide(callServiceb(undefined));
    expect(v.status).toBe(403);
    expect(v.body).toBe('RBAC: access denied');
    expect(v.steps.join('\n')).toContain('requestPrincipals must be one of [https://jwt-factory//servicea] but is (none: no verified JWT)');
  });

  it('an expired token (?expired=1) is 401 "Jwt is expired"', async () => {
    const v = await decide(callServiceb(await issue('servicea', { aud: 'serviceb' }, '?expired=1')));
    expect(v.status).toBe(401);
    expect(v.body).toBe('Jwt is expired');
    expect(v.responseHeaders['www-authenticate']).toBe('Bearer realm="http://serviceb.jwt-suite.svc.cluster.local:3001/scenario1-server", error="invalid_token"');
  });

  it('serviceb\'s key forging sub servicea is refused: the jwksUri holds servicea\'s key only', async () => {
    const v = await decide(callServiceb(await issue('serviceb', { aud: 'serviceb', sub: 'servicea' })));
    expect(v.status).toBe(401);
    expect(v.body).toBe("Jwks doesn't have key to match kid or alg from Jwt");
  });

  it('a token for audience servicec is 403 "Audiences in Jwt are not allowed"', async () => {
    const v = await decide(callServiceb(await issue('servicea', { aud: 'servicec' })));
    expect(v.status).toBe(403);
    expect(v.body).toBe('Audiences in Jwt are not allowed');
  });

  it('without servicea\'s mTLS identity a valid token is not enough (403)', async () => {
    const v = await decide(callServiceb(await issue('servicea', { aud: 'serviceb' }), { sourcePrincipal: 'cluster.local/ns/jwt-suite/sa/servicec' }));
    expect(v.status).toBe(403);
    expect(v.body).toBe('RBAC: access denied');
  });
});

/** What the engine decides for each factory variant (audience serviceb asked for, where the variant keeps it). */
const ENGINE_VERDICTS: Record<string, string> = {
  expired: '401 Jwt is expired',
  'not-yet-valid': '401 Jwt not yet valid',
  'wrong-issuer': '401 Jwt issuer is not configured',
  'wrong-audience': '403 Audiences in Jwt are not allowed',
  'unknown-kid': "401 Jwks doesn't have key to match kid or alg from Jwt",
  'wrong-alg': "401 Jwks doesn't have key to match kid or alg from Jwt",
  'bad-signature': '401 Jwt verification fails',
  'no-exp': '200 ',
  oversize: '200 ',
  'alg-none': '401 Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
};

describe('factory negative-token variants at the serviceb sidecar', () => {
  for (const [variant, expected] of Object.entries(ENGINE_VERDICTS)) {
    it(`variant ${variant} → ${expected.trim()}`, async () => {
      const res = await fetch(`${base}/issueToken/servicea?variant=${variant}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ aud: 'serviceb' }),
      });
      expect(res.status).toBe(200);
      const issued = (await res.json()) as { token: string; verdict?: { envoy?: string } };
      const v = await decide(callServiceb(issued.token));
      expect(`${v.status} ${v.body}`).toBe(expected);
      // The factory's own documented verdict says the same as the engine.
      expect(issued.verdict?.envoy?.startsWith(v.status === 200 ? 'accepted' : expected)).toBe(true);
    });
  }
});

describe('npm run mesh -- explain on k8s/istio', () => {
  let dir: string;
  let jwksFile: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'mesh-cli-'));
    jwksFile = path.join(dir, 'jwks.json');
    await writeFile(jwksFile, JSON.stringify({ [jwksUri]: jwks }));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const explain = (args: string[]) => runScript('mesh/cli.ts', args);
  const common = () => ['explain', '--policies', 'k8s/istio', '--path', '/scenario1-server', '--workload', 'app=serviceb', '--namespace', 'jwt-suite', '--port', '3001', '--source-principal', FROM_SERVICEA, '--jwks-file', jwksFile];

  it('an expired token prints the verdict and the reason, exit 1', async () => {
    const token = await issue('servicea', { aud: 'serviceb' }, '?expired=1');
    const out = await explain([...common(), '--token', token]);
    expect(out.code).toBe(1);
    expect(out.stdout).toContain('Verdict: 401 Jwt is expired');
    expect(out.stdout).toMatch(/exp is 36\d\d s in the past; Envoy allows 60 s of skew/);
    expect(out.stdout).not.toContain(token);
  });

  it('a good token prints the deciding policy as JSON, exit 0, the forwarded token masked', async () => {
    const token = await issue('servicea', { aud: 'serviceb' });
    const out = await explain([...common(), '--token', token, '--json']);
    expect(out.code).toBe(0);
    const verdict = JSON.parse(out.stdout) as { status: number; decidedBy: string; principal: string; upstreamHeaders: Record<string, string> };
    expect(verdict).toMatchObject({ status: 200, principal: 'https://jwt-factory//servicea', decidedBy: 'AuthorizationPolicy ALLOW ns[jwt-suite]-policy[serviceb-allow-servicea]-rule[0]' });
    expect(verdict.upstreamHeaders.authorization).toBe('Bearer [token]');
    expect(out.stdout).not.toContain(token);
  });

  it('bad usage exits 2 with the usage text', async () => {
    const out = await explain(['explain', '--path', '/x']);
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('--policies is required');
    expect(out.stderr).toContain('Usage: npm run mesh -- explain');
  });

  it('a policy file with a typo exits 2 naming the file and the field', async () => {
    const bad = path.join(dir, 'bad.yaml');
    await writeFile(bad, 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - to:\n    - operation: {path: [/x]}\n');
    const out = await explain(['explain', '--policies', bad]);
    expect(out.code).toBe(2);
    expect(out.stderr).toContain(`${bad} (AuthorizationPolicy p): spec.rules[0].to[0].operation: unknown field "path"`);
  });
});
