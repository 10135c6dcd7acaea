import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runScript, startProcess, type Started } from '../helpers/process.js';
import { runJwt } from './run.js';

let factory: Started;
let dir: string;
let base: string;

/** Runs a command in this process (the factory is a real process); `jwtProcess` runs the real entry point. */
const jwt = (...args: string[]) => runJwt(args);
const jwtProcess = (...args: string[]) => runScript('cli/main.ts', args);
const withFactory = (...args: string[]) => jwt(...args, '--factory', base);

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'jwt-cli-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  // No PUBLIC_URL: its default is the listening address, so the discovery document's jwks_uri works from here.
  factory = await startProcess('jwt-factory/main.ts', { env: { PORT: String(port), HOST: '127.0.0.1', KEYS_DIR: path.join(dir, 'keys') } });
});
afterAll(async () => {
  await factory?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('jwt mint, as gen-jwt.py is called', () => {
  it('signs with a PEM key file like gen-jwt.py: single-dash flags, aud list, string claims, sub = iss, and a JWKS that verifies it', async () => {
    const pem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' });
    await writeFile(path.join(dir, 'key.pem'), pem, { mode: 0o600 });
    const jwksFile = path.join(dir, 'gen-jwks.json');
    const res = await jwt('mint', path.join(dir, 'key.pem'), '-iss', 'testing@secure.istio.io', '--aud', 'foo,bar', '--claims=email:foo@example.com,group:dev', `-jwks=${jwksFile}`, '--expire', '300');
    expect(res.code, res.stderr).toBe(0);
    const token = res.stdout.trim();
    const jwks = JSON.parse(await readFile(jwksFile, 'utf8')) as JSONWebKeySet;
    expect(Object.keys(jwks.keys[0]!).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: 'testing@secure.istio.io', audience: 'bar' });
    expect(protectedHeader).toMatchObject({ alg: 'RS256', typ: 'JWT', kid: jwks.keys[0]!.kid });
    expect(payload).toMatchObject({ sub: 'testing@secure.istio.io', aud: ['foo', 'bar'], email: 'foo@example.com', group: 'dev' });
    expect(payload.exp! - payload.iat!).toBe(300);
  });

  it('mints through the factory with the same flags, and the token verifies with the JWKS the factory publishes', async () => {
    const jwksFile = path.join(dir, 'factory-jwks.json');
    const res = await withFactory('mint', 'gen-style', '--iss', 'https://jwt-factory/', '--sub', 'gen-style', '--aud', 'serviceb', '--claims', 'team:payments', '--jwks', jwksFile, '--expire', '600');
    expect(res.code, res.stderr).toBe(0);
    const published = (await (await fetch(`${base}/keys/gen-style/jwks.json`)).json()) as JSONWebKeySet;
    const { payload } = await jwtVerify(res.stdout.trim(), createLocalJWKSet(published), { issuer: 'https://jwt-factory/', audience: 'serviceb' });
    expect(payload).toMatchObject({ sub: 'gen-style', team: 'payments' });
    expect(payload.exp! - payload.iat!).toBe(600);
    expect(JSON.parse(await readFile(jwksFile, 'utf8'))).toEqual(published);
  });

  it('writes the token to --out with mode 0600 and prints no token with --json', async () => {
    const out = path.join(dir, 'token.jwt');
    const res = await withFactory('mint', 'servicea', '--aud', 'serviceb', '--out', out, '--json');
    expect(res.code, res.stderr).toBe(0);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const token = (await readFile(out, 'utf8')).trim();
    expect(res.stdout).not.toContain(token);
    expect(JSON.parse(res.stdout)).toMatchObject({ out, kid: decodeProtectedHeader(token).kid, alg: 'RS256' });
  });

  it('exits 2 for a bad flag or variant and 1 when the factory refuses or cannot be reached', async () => {
    const unknown = await jwt('mint', 'servicea', '--audiance', 'x');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("'--audiance'");
    expect((await withFactory('mint', 'servicea', '--variant', 'nope')).code).toBe(2);
    const down = await jwt('mint', 'servicea', '--factory', `http://127.0.0.1:${await freePort()}`);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)\n  nothing listens there: start the factory \(npm run jwt-factory\)/);
  });

  it('finds the factory with no --factory: JWT_FACTORY_URL, else the address the factory listens on by default; --factory wins', async () => {
    const fromEnv = await runScript('cli/main.ts', ['jwks', '--json'], { env: { JWT_FACTORY_URL: base } });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);
    expect(JSON.parse(fromEnv.stdout)).toEqual(await (await fetch(`${base}/.well-known/jwks.json`)).json());

    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const flagWins = await runScript('cli/main.ts', ['jwks', '--factory', base], { env: { JWT_FACTORY_URL: nowhere } });
    expect(flagWins.code, flagWins.stderr).toBe(0);

    const refused = await runScript('cli/main.ts', ['jwks'], { env: { JWT_FACTORY_URL: nowhere } });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`jwt jwks: cannot reach ${nowhere} (ECONNREFUSED)`);
    expect(refused.stderr).toContain('--factory <url> or JWT_FACTORY_URL=<url>');

    const bad = await runScript('cli/main.ts', ['jwks'], { env: { JWT_FACTORY_URL: 'localhost:5555' } });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('JWT_FACTORY_URL must be an http(s) URL such as http://127.0.0.1:5555 (got "localhost:5555")');

    // The default is the factory's own default PUBLIC_URL, as its --help prints it.
    const factoryHelp = await runScript('jwt-factory/main.ts', ['--help']);
    const factoryDefault = /^\s+PUBLIC_URL\s+(\S+)$/m.exec(factoryHelp.stdout)?.[1];
    expect(factoryDefault).toBe('http://127.0.0.1:5555');
    expect((await jwt('jwks', '--help')).stdout).toContain(`else ${factoryDefault}, where npm run jwt-factory listens`);
  });

  it("signs gen-jwt.py's century-long --expire with a key file, and with a keyId names MAX_TOKEN_TTL and the largest lifetime allowed", async () => {
    const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' });
    await writeFile(path.join(dir, 'century.pem'), pem, { mode: 0o600 });
    const local = await jwt('mint', path.join(dir, 'century.pem'), '--expire', '3153600000');
    expect(local.code, local.stderr).toBe(0);
    const payload = decodeJwt(local.stdout.trim());
    expect(payload.exp! - payload.iat!).toBe(3153600000);

    const tooLong = await withFactory('mint', 'servicea', '--expire', '3153600000', '--json');
    expect(tooLong.code).toBe(1);
    expect(JSON.parse(tooLong.stdout)).toMatchObject({ ok: false, status: 400, error: { code: 'invalid_ttl', maxTokenTtl: 86400 } });
    expect(tooLong.stderr).toContain('at most MAX_TOKEN_TTL = 86400 s (1 d), and --expire asks for 3153600000 s: use --expire 86400 or less');
    expect(tooLong.stderr).toContain('sign locally with a PEM key file');
    expect((await withFactory('mint', 'servicea', '--expire', '86400')).code).toBe(0);
  });
});

describe('jwt decode and jwt verify', () => {
  it('decodes locally with times as dates, verifies on the factory and against its JWKS, and names the failed check', async () => {
    const file = path.join(dir, 'b.jwt');
    expect((await withFactory('mint', 'servicea', '--aud', 'serviceb', '--out', file)).code).toBe(0);
    const decoded = await jwt('decode', '--token-file', file, '--json');
    expect(decoded.code).toBe(0);
    const body = JSON.parse(decoded.stdout);
    expect(body.payload).toMatchObject({ sub: 'servicea', aud: 'serviceb' });
    expect(body.status).toMatch(/^expires in (59 min|1 h)$/);
    expect(body.times.map((t: { claim: string }) => t.claim)).toEqual(['iat', 'exp']);

    expect((await withFactory('verify', '--token-file', file, '--key', 'servicea', '--aud', 'serviceb', '--sub', 'servicea')).code).toBe(0);
    expect((await withFactory('verify', '--token-file', file, '--aud', 'serviceb')).code).toBe(0);
    const wrongAud = await withFactory('verify', '--token-file', file, '--key', 'servicea', '--aud', 'servicec', '--sub', 'servicea', '--json');
    expect(wrongAud.code).toBe(1);
    expect(JSON.parse(wrongAud.stdout)).toMatchObject({ valid: false, error: { name: 'JsonWebTokenError', code: 'audience_invalid' } });
  });

  it('refuses an expired token as TokenExpiredError, a malformed one, and a JWKS without the kid', async () => {
    const expired = path.join(dir, 'expired.jwt');
    expect((await withFactory('mint', 'servicea', '--expired', '--out', expired)).code).toBe(0);
    const res = await withFactory('verify', '--token-file', expired);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/^refused: TokenExpiredError \(expired\): jwt expired, expired at /);

    const malformed = await jwt('decode', 'not-a-token', '--json');
    expect(malformed.code).toBe(1);
    expect(JSON.parse(malformed.stdout).error).toMatchObject({ code: 'malformed' });

    const other = path.join(dir, 'other-jwks.json');
    expect((await withFactory('jwks', 'gen-style', '--out', other)).code).toBe(0);
    const noKid = await jwt('verify', '--token-file', expired, '--jwks', other, '--json');
    expect(noKid.code).toBe(1);
    expect(JSON.parse(noKid.stdout).error).toMatchObject({ name: 'JsonWebTokenError', code: 'unknown_kid' });
  });

  it('verifies against a provider found by discovery, requiring the issuer it names', async () => {
    const good = path.join(dir, 'd-good.jwt');
    const foreign = path.join(dir, 'd-foreign.jwt');
    expect((await withFactory('mint', 'servicea', '--out', good)).code).toBe(0);
    expect((await withFactory('mint', 'servicea', '--iss', 'https://elsewhere/', '--sub', 'servicea', '--out', foreign)).code).toBe(0);
    expect((await jwt('verify', '--token-file', good, '--discovery', base)).code).toBe(0);
    const res = await jwt('verify', '--token-file', foreign, '--discovery', `${base}/.well-known/openid-configuration`, '--json');
    expect(res.code).toBe(1);
    expect(JSON.parse(res.stdout).error).toMatchObject({ name: 'JsonWebTokenError', code: 'issuer_invalid' });
  });
});

describe('jwt jwks, rotate and explain', () => {
  it('rotates with a publish-ahead window: the new key is published, the old one keeps signing', async () => {
    const before = decodeProtectedHeader((await withFactory('mint', 'rot')).stdout.trim()).kid;
    const res = await withFactory('rotate', 'rot', '--publish-ahead', '1200', '--json');
    expect(res.code, res.stderr).toBe(0);
    const rotated = JSON.parse(res.stdout);
    expect(rotated.previous).toEqual([expect.objectContaining({ kid: before })]);
    const keys = JSON.parse((await withFactory('jwks', 'rot')).stdout) as JSONWebKeySet;
    expect(keys.keys.map((k) => k.kid)).toEqual([rotated.kid, before]);
    expect(decodeProtectedHeader((await withFactory('mint', 'rot')).stdout.trim()).kid).toBe(before);
    expect((await withFactory('rotate', 'ghost')).code).toBe(1);
    expect((await withFactory('rotate', 'rot', '--publish-ahead', 'soon')).code).toBe(2);
  });

  it("answers as npm run mesh -- explain: the same verdict and exit code, a token never printed", async () => {
    const file = path.join(dir, 'mesh.jwt');
    expect((await withFactory('mint', 'servicea', '--aud', 'serviceb', '--out', file)).code).toBe(0);
    const jwksFile = path.join(dir, 'servicea-jwks.json');
    expect((await withFactory('jwks', 'servicea', '--out', jwksFile)).code).toBe(0);
    const args = ['--policies', 'k8s/istio', '--path', '/scenario1-server', '--workload', 'app=serviceb', '--namespace', 'jwt-suite', '--port', '3001', '--source-principal', 'cluster.local/ns/jwt-suite/sa/servicea', '--jwks-file', jwksFile];
    const allowed = await jwtProcess('explain', ...args, '--token-file', file);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toMatch(/^Verdict: 200 allowed/);
    expect(allowed.stdout).not.toContain((await readFile(file, 'utf8')).trim());
    const denied = await jwtProcess('explain', ...args, '--json');
    expect(denied.code).toBe(1);
    expect(JSON.parse(denied.stdout)).toMatchObject({ status: 403, body: 'RBAC: access denied' });
    expect(decodeJwt((await readFile(file, 'utf8')).trim()).aud).toBe('serviceb');
    
  });

  it('lists the commands with --help and exits 2 for an unknown command', async () => {
    const help = await jwtProcess('--help');
    expect(help.code).toBe(0);
    for (const name of ['mint', 'decode', 'verify', 'jwks', 'rotate', 'login', 'exchange', 'explain']) expect(help.stdout).toContain(`  ${name} `);
    const mintHelp = await jwt('mint', '--help');
    expect(mintHelp.stdout).toContain('--expire <seconds>');
    expect((await jwtProcess('frobnicate')).code).toBe(2);
  });
});
