import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { ensureCertificates } from '../lib/certs.js';
import { parseEnv, setting } from '../lib/config.js';
import { freePort } from '../lib/ports.js';
import { launch, ROOT, type Launched } from './bench/launch.js';
import { LOGIN_CLIENT, LOGIN_GATEWAY_PORT, demoOidcConfig, loginGatewayArgs, playBrowser, writeLoginRules } from './demo-browser.js';

/**
 * `npm run demo [-- --ports auto]`: the suite's main job. Makes sure certificates exist,
 * starts the factory (with its OpenID Connect provider) and servicea/serviceb/servicec as real
 * processes, plays the four service scenarios (each valid and with expired=1), scenarios 5
 * and 7 (a user logs in over HTTP; her token goes to serviceb through mesh-gateway, or is
 * exchanged for servicec, and once expired is refused), scenario 6 (the password grant's id
 * token to serviceb through mesh-gateway), then sends seven calls to serviceb through
 * mesh-gateway enforcing k8s/istio, then logs alice in to the webui in headless chromium through
 * mesh-gateway's login mode, prints what was expected and what happened, stops
 * everything it started and exits 0 only when every outcome is the expected one.
 */

const HELP = `Usage: npm run demo [-- --ports auto] [--state-dir DIR]

Starts jwt-factory and servicea, serviceb, servicec as real processes on 127.0.0.1, runs the
twelve scenario calls (1-4, each valid and with expired=1; 5 and 7, a user who logs in, and 7
with her token once expired; 6, the password grant's id token through mesh-gateway), then seven
calls to serviceb through mesh-gateway enforcing k8s/istio (what Istio's sidecar would answer),
then headless chromium logs alice in to the webui through mesh-gateway's login mode on port
${LOGIN_GATEWAY_PORT} (a free one with --ports auto), prints the tables and a verdict, stops every
process it started. Exit code 0 only when every outcome is the expected one.

  --ports default   the documented ports: factory 5555, servicea 3000, serviceb 3001/8443,
                    servicec 3002/9443 (default); a taken port stops the demo with its name
  --ports auto      free ports chosen by the system, for a machine where those are taken
  --ports F,A,B,C,BH,CH
                    these ports for the factory, servicea, serviceb, servicec, serviceb's
                    HTTPS and servicec's HTTPS; a taken port stops the demo with its name
  --state-dir DIR   keep certificates in DIR/certs and keys in DIR/keys (default: the
                    repository's certs/ and keys/)
  -h, --help        this text

Certificates go to certs/ (npm run certs), the factory's keys to keys/, servicea's own key
pair to keys/servicea-self/: all git-ignored, reused on the next run.`;

type Role = 'jwt-factory' | 'servicea' | 'serviceb' | 'servicec';
interface PortPlan {
  'jwt-factory': number;
  servicea: number;
  serviceb: number;
  servicec: number;
  serviceb_https: number;
  servicec_https: number;
}

const DEFAULT_PORTS: PortPlan = { 'jwt-factory': 5555, servicea: 3000, serviceb: 3001, servicec: 3002, serviceb_https: 8443, servicec_https: 9443 };
const HOST = '127.0.0.1';

/** Resolves true when `port` can be bound on the demo's host right now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, HOST, () => srv.close(() => resolve(true)));
  });
}


const describePort = (key: keyof PortPlan) => (key.endsWith('_https') ? `${key.replace('_https', '')} (HTTPS)` : key);

const PORT_KEYS = Object.keys(DEFAULT_PORTS) as (keyof PortPlan)[];

/** `default`, `auto` or six comma-separated ports in PORT_KEYS order; undefined when malformed. */
function parsePorts(value: string): PortPlan | 'auto' | undefined {
  if (value === 'auto') return 'auto';
  if (value === 'default') return DEFAULT_PORTS;
  const parts = value.split(',').map((p) => p.trim());
  if (parts.length !== PORT_KEYS.length || !parts.every((p) => /^\d{1,5}$/.test(p) && Number(p) >= 1 && Number(p) <= 65535)) return undefined;
  const ports = parts.map(Number);
  if (new Set(ports).size !== ports.length) return undefined;
  return Object.fromEntries(PORT_KEYS.map((key, i) => [key, ports[i]!])) as unknown as PortPlan;
}

async function planPorts(wanted: PortPlan | 'auto'): Promise<PortPlan> {
  if (wanted === 'auto') {
    const plan = { ...DEFAULT_PORTS };
    for (const key of PORT_KEYS) plan[key] = await freePort(HOST);
    return plan;
  }
  for (const key of PORT_KEYS) {
    if (!(await isFree(wanted[key]))) {
      throw new DemoError(`Port ${wanted[key]} is already in use, and ${describePort(key)} needs it: stop what listens there, or run npm run demo -- --ports auto.`);
    }
  }
  return wanted;
}

class DemoError extends Error {}

/**
 * The LOG_LEVEL the demo's processes get: the caller's, so debug and trace reach their logs. A
 * level quieter than info would hide the "listening" line the demo waits for, so those run at
 * info (their logs are files in a temporary folder either way).
 */
export function childLogLevel(callerLevel: string): string {
  return ['info', 'debug', 'trace'].includes(callerLevel) ? callerLevel : 'info';
}

/** The environment of each process: explicit, so a stray variable in the shell changes nothing. */
function environments(p: PortPlan, state: string, logLevel: string, gatewayPort: number): Record<Role, Record<string, string>> {
  const base = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: logLevel };
  const selfKeys = path.join(state, 'keys', 'servicea-self');
  const service = {
    ...base,
    HOST,
    CERTS_DIR: path.join(state, 'certs'),
    SERVICE_KEYS_DIR: selfKeys,
    PEER_KEYS_DIR: selfKeys,
    FACTORY_URL: `http://${HOST}:${p['jwt-factory']}`,
    SERVICEA_URL: `http://${HOST}:${p.servicea}`,
    SERVICEB_URL: `http://${HOST}:${p.serviceb}`,
    SERVICEC_URL: `http://${HOST}:${p.servicec}`,
    SERVICEB_HTTPS_URL: `https://${HOST}:${p.serviceb_https}`,
    SERVICEC_HTTPS_URL: `https://${HOST}:${p.servicec_https}`,
  };
  return {
    'jwt-factory': {
      ...base,
      HOST,
      PORT: String(p['jwt-factory']),
      PUBLIC_URL: `http://localhost:${p['jwt-factory']}`,
      KEYS_DIR: path.join(state, 'keys'),
      // The OpenID Connect provider, for scenario 5's logged-in user.
      OIDC_CONFIG: path.join(ROOT, 'jwt-factory', 'oidc.demo.yaml'),
      // ES256: its key is made at once on a fresh state folder (an RSA key can take seconds on a busy machine).
      OIDC_ALG: 'ES256',
      // Only authenticated clients mint, each its own keyId's tokens (servicea's credential: app/.servicea.env).
      ISSUE_AUTH: 'client',
    },
    // The demo client's secret of jwt-factory/oidc.demo.yaml, for scenario 7's token exchange.
    // Scenario 6 reaches serviceb through mesh-gateway, which stands in for serviceb's sidecar.
    servicea: { ...service, PORT: String(p.servicea), HTTPS_PORT: '', OIDC_CLIENT_SECRET: 'servicea-secret', SERVICEB_MESH_URL: `http://${HOST}:${gatewayPort}` },
    serviceb: { ...service, PORT: String(p.serviceb), HTTPS_PORT: String(p.serviceb_https) },
    servicec: { ...service, PORT: String(p.servicec), HTTPS_PORT: String(p.servicec_https) },
  };
}

interface Call {
  scenario: string;
  path: string;
  /** Receiver -> expected verdict name ('valid' or an error name). */
  expected: Record<string, string>;
  /** servicea's own refusal (`403 token_exchange_refused: …`), expected instead of the receivers' verdicts. */
  refused?: string;
  /**
   * The user's token the call carries: `login` her access token after the login (5, 7);
   * `expired` the same from the one-second client webui-short, presented once it has expired;
   * `password` the password grant's id token (6).
   */
  user?: 'login' | 'expired' | 'password';
}

const CALLS: Call[] = [
  { scenario: '1 factory token, B', path: '/scenario1', expected: { serviceb: 'valid' } },
  { scenario: '1 factory token, B, expired', path: '/scenario1?expired=1', expected: { serviceb: 'TokenExpiredError' } },
  { scenario: '2 factory tokens, B + C', path: '/scenario2', expected: { serviceb: 'valid', servicec: 'valid' } },
  { scenario: '2 factory tokens, B + C, C expired', path: '/scenario2?expired=1', expected: { serviceb: 'valid', servicec: 'TokenExpiredError' } },
  { scenario: '3 self-signed, B over HTTPS', path: '/scenario3', expected: { serviceb: 'valid' } },
  { scenario: '3 self-signed, B over HTTPS, expired', path: '/scenario3?expired=1', expected: { serviceb: 'TokenExpiredError' } },
  { scenario: '4 self-signed, B + C over HTTPS', path: '/scenario4', expected: { serviceb: 'valid', servicec: 'valid' } },
  { scenario: '4 self-signed, B + C, C expired', path: '/scenario4?expired=1', expected: { serviceb: 'valid', servicec: 'TokenExpiredError' } },
  { scenario: '5 alice logs in, her token to B', path: '/scenario5', expected: { serviceb: 'valid' }, user: 'login' },
  { scenario: '6 password grant, id token via mesh to B', path: '/scenario6', expected: { serviceb: 'valid' }, user: 'password' },
  { scenario: '7 her token exchanged by A for C', path: '/scenario7', expected: { servicec: 'valid' }, user: 'login' },
  {
    scenario: '7 her token, once expired, for C',
    path: '/scenario7',
    expected: {},
    refused: '403 token_exchange_refused: subject_token: The access token is not valid: jwt expired',
    user: 'expired',
  },
];

/** The demo's user and the client she logs in to (jwt-factory/oidc.demo.yaml). */
const USER = { username: 'alice', password: 'alice-password' };
const WEBUI = { id: 'webui', secret: 'webui-secret', redirectUri: 'http://localhost:3000/callback' };
/** webui with one-second access tokens, for the expired variant of scenario 7. */
const WEBUI_SHORT = { ...WEBUI, id: 'webui-short', secret: 'webui-short-secret' };

/** A hidden field of the factory's login form (its values are HTML-escaped). */
function formField(html: string, name: string): string {
  const raw = new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1];
  if (raw === undefined) throw new DemoError(`the login page has no ${name} field`);
  const entities: Record<string, string> = { '&amp;': '&', '&quot;': '"', '&#39;': "'", '&lt;': '<', '&gt;': '>' };
  return raw.replace(/&(amp|quot|#39|lt|gt);/g, (e) => entities[e]!);
}

/**
 * Logs alice in as her browser would, over HTTP: GET /authorize (PKCE S256), the login form
 * posted with its CSRF cookie, the code from the redirect, and the code exchanged at /token.
 */
async function userAccessToken(factory: string, client = WEBUI): Promise<string> {
  const signal = AbortSignal.timeout(15_000);
  const verifier = randomBytes(32).toString('base64url');
  const query = new URLSearchParams({
    client_id: client.id,
    redirect_uri: client.redirectUri,
    response_type: 'code',
    scope: 'openid profile',
    state: randomBytes(8).toString('base64url'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  });
  const page = await fetch(`${factory}/authorize?${query}`, { redirect: 'manual', signal });
  const html = await page.text();
  const cookie = page.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const login = await fetch(`${factory}/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
    body: new URLSearchParams({ csrf: formField(html, 'csrf'), request: formField(html, 'request'), ...USER }),
    signal,
  });
  const code = new URL(login.headers.get('location') ?? 'about:blank').searchParams.get('code');
  if (!code) throw new DemoError(`the login answered ${login.status} without a code`);
  const tokens = await fetch(`${factory}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: client.redirectUri, code_verifier: verifier }),
    signal,
  });
  const body = (await tokens.json()) as { access_token?: string; error?: string };
  if (!body.access_token) throw new DemoError(`the token endpoint answered ${tokens.status} ${body.error ?? ''}`.trim());
  return body.access_token;
}

/** The WSO2 seed's curl: the password grant with Basic client authentication (client cli, user admin). */
const CLI = { id: 'cli', secret: 'cli-secret', username: 'admin', password: 'admin' };

/** The id token of the password grant. */
async function passwordGrantIdToken(factory: string): Promise<string> {
  const signal = AbortSignal.timeout(15_000);
  const res = await fetch(`${factory}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${CLI.id}:${CLI.secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'password', username: CLI.username, password: CLI.password, scope: 'openid' }),
    signal,
  });
  const body = (await res.json()) as { id_token?: string; error?: string };
  if (!body.id_token) throw new DemoError(`the password grant answered ${res.status} ${body.error ?? ''}`.trim());
  return body.id_token;
}

/**
 * alice's access token from webui-short, once it has expired: the wait until its `exp` has
 * passed (a second or two) is real time, so whoever checks it sees a token past its exp.
 */
async function expiredUserAccessToken(factory: string): Promise<string> {
  const token = await userAccessToken(factory, WEBUI_SHORT);
  const { exp } = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { exp?: number };
  if (typeof exp !== 'number') throw new DemoError('the access token of webui-short has no exp');
  const wait = (exp + 1) * 1000 - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  return token;
}

/** The Bearer token a call carries, obtained the way its scenario says. */
function userToken(factory: string, user: NonNullable<Call['user']>): Promise<string> {
  if (user === 'login') return userAccessToken(factory);
  return user === 'expired' ? expiredUserAccessToken(factory) : passwordGrantIdToken(factory);
}

const short = (receiver: string) => (receiver === 'serviceb' ? 'B' : receiver === 'servicec' ? 'C' : receiver);
const describeVerdicts = (v: Record<string, string>) => Object.entries(v).map(([r, name]) => `${short(r)} ${name}`).join(', ');

/** Runs one call and says what happened in the same words as the expectation. */
async function play(base: string, factory: string, call: Call): Promise<{ outcome: string; ok: boolean; ms: number }> {
  const started = performance.now();
  let outcome: string;
  let ok = false;
  try {
    const headers: Record<string, string> = call.user ? { authorization: `Bearer ${await userToken(factory, call.user)}` } : {};
    const res = await fetch(`${base}${call.path}`, { headers, signal: AbortSignal.timeout(15_000) });
    const body = (await res.json()) as Record<string, { status?: number; valid?: boolean; error?: { name?: string; code?: string; message?: string; dependency?: string } }>;
    if (res.status === 200) {
      const seen: Record<string, string> = {};
      // A refusal was expected: whatever the receivers said is the outcome.
      for (const receiver of Object.keys(call.refused === undefined ? call.expected : body)) {
        const r = body[receiver];
        // A refusal by the receiver's sidecar reads as Envoy's answer: status and body.
        seen[receiver] = r?.valid === true ? 'valid' : r?.error?.code === 'mesh_refused' ? `${r.status} ${r.error.message}` : (r?.error?.name ?? 'no answer');
      }
      outcome = describeVerdicts(seen);
      ok = call.refused === undefined && Object.entries(call.expected).every(([r, name]) => seen[r] === name);
    } else {
      const e = (body as { error?: { code?: string; dependency?: string; description?: string } }).error;
      outcome = `${res.status} ${e?.code ?? ''}${e?.dependency ? ` (${e.dependency})` : ''}${e?.description ? `: ${e.description}` : ''}`.trim();
      ok = outcome === call.refused;
    }
  } catch (err) {
    outcome = `no answer: ${(err as Error).message}`;
  }
  return { outcome, ok, ms: Math.round(performance.now() - started) };
}

/** One request sent to serviceb through mesh-gateway, which enforces k8s/istio as serviceb's sidecar. */
interface MeshCall {
  label: string;
  /**
   * issueToken query for the token to present; `id-token`: the password grant's (to
   * /scenario6-server); `access-token`: alice's after her login (to /scenario5-server); undefined: no token.
   */
  token?: string;
  /**
   * Sent to the second gateway, which decides as if two hours later (mesh-gateway --now): the
   * provider never issues an expired token, so a real one is presented after it has expired.
   */
  later?: boolean;
  /** `200 B valid`, or Envoy's status and body. */
  expected: string;
}

const MESH_CALLS: MeshCall[] = [
  { label: "servicea's token for B", token: '', expected: '200 B valid' },
  { label: 'no token', expected: '403 RBAC: access denied' },
  { label: 'expired token', token: '?expired=1', expected: '401 Jwt is expired' },
  { label: 'token for another audience', token: '?variant=wrong-audience', expected: '403 Audiences in Jwt are not allowed' },
  { label: 'token with an unknown kid', token: '?variant=unknown-kid', expected: "401 Jwks doesn't have key to match kid or alg from Jwt" },
  { label: "admin's id token, two hours later", token: 'id-token', later: true, expected: '401 Jwt is expired' },
  { label: "alice's access token, two hours later", token: 'access-token', later: true, expected: '401 Jwt is expired' },
];

/** servicea's demo credential at the factory (jwt-factory/oidc.demo.yaml, app/.servicea.env). */
const SERVICEA_BASIC = `Basic ${Buffer.from('servicea:servicea-secret').toString('base64')}`;

/** Calls the factory refuses with ISSUE_AUTH=client: who may get which token. */
const ISSUANCE_CALLS: { label: string; headers: Record<string, string>; body: object; expected: string }[] = [
  { label: 'anonymous issueToken for servicea', headers: {}, body: { aud: 'serviceb' }, expected: '401 invalid_client' },
  { label: 'servicea asks for sub admin', headers: { authorization: SERVICEA_BASIC }, body: { sub: 'admin', aud: 'serviceb' }, expected: '400 claim_not_allowed' },
];

/** Plays the issuance refusals against the factory: rows for the table and how many came out as expected. */
async function playIssuance(factory: string): Promise<{ rows: string[][]; good: number }> {
  const rows = [['who may get which token', 'expected', 'outcome', 'ms', '']];
  let good = 0;
  for (const call of ISSUANCE_CALLS) {
    const started = performance.now();
    let outcome: string;
    try {
      const res = await fetch(`${factory}/issueToken/servicea`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...call.headers },
        body: JSON.stringify(call.body),
        signal: AbortSignal.timeout(15_000),
      });
      const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
      outcome = `${res.status} ${body.error?.code ?? ''}`.trim();
    } catch (err) {
      outcome = `no answer: ${(err as Error).message}`;
    }
    if (outcome === call.expected) good += 1;
    rows.push([call.label, call.expected, outcome, String(Math.round(performance.now() - started)), outcome === call.expected ? 'ok' : 'UNEXPECTED']);
  }
  return { rows, good };
}
/** How far ahead the second gateway's clock runs: past the id token's 10 minutes and Envoy's 60 s skew. */
const LATER_MS = 2 * 3600_000;

/** The cluster identity and port of the k8s/istio rules: serviceb, called by servicea's service account on 3001. */
const MESH_WORKLOAD = ['--workload', 'app=serviceb', '--namespace', 'jwt-suite', '--source-principal', 'cluster.local/ns/jwt-suite/sa/servicea', '--destination-port', '3001'];

/** Sends one MeshCall through the gateway and says what happened in the same words as the expectation. */
async function playMesh(gateways: { now: string; later: string }, factory: string, call: MeshCall): Promise<{ outcome: string; ok: boolean; ms: number }> {
  const started = performance.now();
  let outcome: string;
  try {
    const headers: Record<string, string> = {};
    if (call.token === 'id-token') {
      headers.authorization = `Bearer ${await passwordGrantIdToken(factory)}`;
    } else if (call.token === 'access-token') {
      headers.authorization = `Bearer ${await userAccessToken(factory)}`;
    } else if (call.token !== undefined) {
      const issued = await fetch(`${factory}/issueToken/servicea${call.token}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: SERVICEA_BASIC },
        body: JSON.stringify({ aud: 'serviceb' }),
        signal: AbortSignal.timeout(15_000),
      });
      if (!issued.ok) throw new DemoError(`the factory answered ${issued.status} to issueToken${call.token}`);
      headers.authorization = `Bearer ${await issued.text()}`;
    }
    const target = call.token === 'id-token' ? '/scenario6-server' : call.token === 'access-token' ? '/scenario5-server' : '/scenario1-server';
    const res = await fetch(`${call.later ? gateways.later : gateways.now}${target}`, { headers, signal: AbortSignal.timeout(15_000) });
    const text = await res.text();
    if (res.status === 200) {
      const body = JSON.parse(text) as { valid?: boolean; error?: { name?: string } };
      outcome = `200 B ${body.valid === true ? 'valid' : (body.error?.name ?? 'no verdict')}`;
    } else {
      outcome = `${res.status} ${text}`;
    }
  } catch (err) {
    outcome = `no answer: ${(err as Error).message}`;
  }
  return { outcome, ok: outcome === call.expected, ms: Math.round(performance.now() - started) };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((cell, i) => (i === 3 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i === 3 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n');
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: { ports: { type: 'string', default: 'default' }, 'state-dir': { type: 'string', default: ROOT }, help: { type: 'boolean', short: 'h', default: false } },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}\n\n${HELP}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  let logLevel: string;
  try {
    logLevel = childLogLevel(parseEnv(z.object({ LOG_LEVEL: setting.logLevel() }), process.env).LOG_LEVEL);
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}\n`);
    return 2;
  }
  const wanted = parsePorts(values.ports);
  if (wanted === undefined) {
    process.stderr.write(`demo: --ports must be default, auto or six different ports such as 5555,3000,3001,3002,8443,9443 (got "${values.ports}")\n`);
    return 2;
  }

  const ports = await planPorts(wanted);
  // The browser row's login gateway: on 8080, where the demo client's redirect URIs point, or on a
  // free port with --ports auto (the factory then gets a copy of the demo config naming that port).
  const loginPort = wanted === 'auto' ? await freePort(HOST) : LOGIN_GATEWAY_PORT;
  if (wanted !== 'auto' && !(await isFree(loginPort))) {
    throw new DemoError(`Port ${loginPort} is already in use, and mesh-gateway (the browser row's login) needs it: stop what listens there, or run npm run demo -- --ports auto.`);
  }
  // Absolute, so the processes (started from the repository root) find it whatever our cwd is.
  const state = path.resolve(values['state-dir']);
  const certsDir = path.join(state, 'certs');
  const shown = path.relative(process.cwd(), certsDir) || '.';
  const certs = await ensureCertificates(certsDir);
  const made = certs.entries.filter((e) => e.action !== 'kept').length;
  process.stdout.write(`certificates: ${made === 0 ? 'kept' : `${made} created or renewed`} in ${shown}/ (clients trust ${path.join(shown, 'ca.pem')})\n`);

  const logDir = await mkdtemp(path.join(os.tmpdir(), 'jwt-suite-demo-'));
  const gatewayPort = await freePort(HOST);
  const env = environments(ports, state, logLevel, gatewayPort);
  env['jwt-factory'].OIDC_CONFIG = await demoOidcConfig(loginPort, logDir);
  const started: Launched[] = [];
  let launching: Promise<unknown> = Promise.resolve();
  let interrupted = false;
  const stopAll = async () => {
    await Promise.all(started.splice(0).map((p) => p.stop(5000)));
  };
  // Ctrl-C or a kill: wait for processes still starting (they are not ours to stop until
  // they listen and we know them), then stop everything we started before leaving.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stdout.write(`\n${signal}: stopping the processes the demo started\n`);
      interrupted = true;
      void launching.then(stopAll);
    });
  }

  try {
    const roles: [Role, string, string[]][] = [
      ['jwt-factory', 'jwt-factory/main.ts', []],
      ['servicea', 'app/main.ts', ['servicea']],
      ['serviceb', 'app/main.ts', ['serviceb']],
      ['servicec', 'app/main.ts', ['servicec']],
    ];
    const t0 = performance.now();
    // allSettled: when one fails to start, the others are still recorded, so all are stopped.
    const pending = Promise.allSettled(
      roles.map(async ([role, script, args]) => {
        const p = await launch(script, { env: env[role], args, logFile: path.join(logDir, `${role}.log`), timeoutMs: 60_000 });
        started.push(p);
        const https = typeof p.listening.httpsPort === 'number' ? `, HTTPS ${p.listening.httpsPort}` : '';
        process.stdout.write(`started ${role.padEnd(11)} pid ${p.pid}, port ${p.port}${https}\n`);
      }),
    );
    launching = pending;
    const launched = await pending;
    const failed = launched.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (interrupted) return 130;
    if (failed) throw failed.reason;
    process.stdout.write(`all four listening after ${Math.round(performance.now() - t0)} ms\n`);

    const a = `http://${HOST}:${ports.servicea}`;
    const gen = await fetch(`${a}/gen-keys`, { method: 'POST' });
    const genBody = (await gen.json()) as { kid?: string; created?: boolean };
    if (!gen.ok) throw new DemoError(`POST /gen-keys on servicea answered ${gen.status}`);
    process.stdout.write(`servicea key pair: ${genBody.created ? 'created' : 'reused'} (kid ${genBody.kid})\n\n`);

    const factoryBase = `http://${HOST}:${ports['jwt-factory']}`;
    // serviceb behind the Istio rules of k8s/istio, enforced locally by mesh-gateway: scenario 6
    // goes through it, and so do the mesh rows. Its JWKS: the keys serviceb-jwt's jwksUri names.
    const jwksFile = path.join(logDir, 'serviceb-jwks.json');
    // servicea's factory key is made on its first token; the JWKS must hold it before the gateway reads it.
    // The factory runs with ISSUE_AUTH=client: servicea's own first token makes its key (creating one by /keys needs factory:admin).
    const made = await fetch(`${factoryBase}/issueToken/servicea`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: SERVICEA_BASIC },
      body: JSON.stringify({ aud: 'serviceb' }),
    });
    if (!made.ok) throw new DemoError(`POST /issueToken/servicea on the factory answered ${made.status}`);
    const keys = await fetch(`${factoryBase}/keys/servicea,oidc/jwks.json`);
    if (!keys.ok) throw new DemoError(`the factory answered ${keys.status} to /keys/servicea,oidc/jwks.json`);
    await writeFile(jwksFile, await keys.text());
    const gateway = (port: number, extra: string[], log: string) =>
      launch('mesh/gateway-main.ts', {
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: logLevel },
        args: ['--policies', path.join(ROOT, 'k8s', 'istio'), '--upstream', `http://${HOST}:${ports.serviceb}`, '--port', String(port), '--host', HOST, ...MESH_WORKLOAD, '--jwks-file', jwksFile, ...extra],
        logFile: path.join(logDir, log),
        timeoutMs: 60_000,
      }).then((p) => {
        started.push(p);
        return p;
      });
    // The browser row: the webui, and mesh-gateway's login in front of it (the factory's browser-facing URL is PUBLIC_URL).
    const factoryPublic = env['jwt-factory'].PUBLIC_URL!;
    const { issuer } = (await (await fetch(`${factoryBase}/.well-known/openid-configuration`)).json()) as { issuer: string };
    const loginRules = await writeLoginRules(path.join(logDir, 'webui-rules'), issuer, await readFile(jwksFile, 'utf8'));
    const plain = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: logLevel };
    const track = (p: Launched) => {
      started.push(p);
      return p;
    };
    const webuiThenLogin = launch('webui/main.ts', {
      env: { ...plain, PORT: '0', HOST, SERVICEB_URL: `http://${HOST}:${ports.serviceb}`, SERVICEC_URL: `http://${HOST}:${ports.servicec}` },
      logFile: path.join(logDir, 'webui.log'),
      timeoutMs: 60_000,
    })
      .then(track)
      .then(async (webui) => {
        const login = track(
          await launch('mesh/gateway-main.ts', {
            env: { ...plain, LOGIN_CLIENT_SECRET: LOGIN_CLIENT.secret },
            args: loginGatewayArgs({ rules: loginRules, webui: `http://${HOST}:${webui.port}`, port: loginPort, host: HOST, factory: factoryPublic }),
            logFile: path.join(logDir, 'mesh-gateway-login.log'),
            timeoutMs: 60_000,
          }),
        );
        return { webui, login };
      });
    const [gw, gwLater, browserSide] = await Promise.all([
      gateway(gatewayPort, [], 'mesh-gateway.log'),
      gateway(0, ['--now', new Date(Date.now() + LATER_MS).toISOString()], 'mesh-gateway-later.log'),
      webuiThenLogin,
    ]);
    process.stdout.write(`started mesh-gateway pid ${gw.pid}, port ${gw.port}: k8s/istio enforced in front of serviceb, as its sidecar would\n`);
    process.stdout.write(`started mesh-gateway pid ${gwLater.pid}, port ${gwLater.port}: the same, deciding as if two hours later (--now)\n`);
    process.stdout.write(`started webui        pid ${browserSide.webui.pid}, port ${browserSide.webui.port}\n`);
    process.stdout.write(`started mesh-gateway pid ${browserSide.login.pid}, port ${browserSide.login.port}: the login (token handler) in front of the webui, client ${LOGIN_CLIENT.id}\n\n`);
    const rows = [['scenario', 'expected', 'outcome', 'ms', '']];
    let good = 0;
    for (const call of CALLS) {
      if (interrupted) return 130;
      const r = await play(a, factoryBase, call);
      if (r.ok) good += 1;
      rows.push([`${call.scenario}`, call.refused ?? describeVerdicts(call.expected), r.outcome, String(r.ms), r.ok ? 'ok' : 'UNEXPECTED']);
    }
    if (interrupted) return 130;
    process.stdout.write(`${table(rows)}\n\n`);
    const issuance = await playIssuance(factoryBase);
    process.stdout.write(`${table(issuance.rows)}\n\n`);

    const meshRows = [['through the mesh rules to serviceb', 'expected', 'outcome', 'ms', '']];
    let meshGood = 0;
    for (const call of MESH_CALLS) {
      if (interrupted) return 130;
      const r = await playMesh({ now: `http://${HOST}:${gw.port}`, later: `http://${HOST}:${gwLater.port}` }, factoryBase, call);
      if (r.ok) meshGood += 1;
      meshRows.push([call.label, call.expected, r.outcome, String(r.ms), r.ok ? 'ok' : 'UNEXPECTED']);
    }
    if (interrupted) return 130;
    process.stdout.write(`${table(meshRows)}\n\n`);
    const login = browserSide.login;
    const browser = await playBrowser({ gateway: `http://${HOST}:${login.port}`, factory: factoryPublic, metrics: `http://${HOST}:${login.listening.metricsPort}` });
    if (interrupted) return 130;
    process.stdout.write(`${table(browser.rows)}\n\n`);

    const total = CALLS.length + MESH_CALLS.length + browser.total;
    const allGood = good === CALLS.length && meshGood === MESH_CALLS.length && issuance.good === ISSUANCE_CALLS.length && browser.good === browser.total;
    const verdict = allGood
      ? `Verdict: all ${CALLS.length} outcomes as expected; the mesh rules answered all ${MESH_CALLS.length} calls as Istio would.`
      : `Verdict: ${total + ISSUANCE_CALLS.length - good - meshGood - issuance.good - browser.good} of ${total + ISSUANCE_CALLS.length} outcomes were not the expected ones (logs in ${logDir}).`;
    if (allGood) {
      process.stdout.write(browser.skipped ? 'Browser: skipped, no chromium (bash scripts/install-tools.sh installs it).\n' : `Browser: all ${browser.total} steps of the login at the gateway as expected (${browser.ms} ms with chromium's start).\n`);
    }
    process.stdout.write(`${verdict}\n`);
    if (allGood) {
      await stopAll();
      await rm(logDir, { recursive: true, force: true });
      return 0;
    }
    return 1;
  } catch (err) {
    process.stderr.write(`demo: the processes' logs are in ${logDir}\n`);
    throw err;
  } finally {
    await stopAll();
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`demo: ${err.message}\n`);
    process.exit(1);
  },
);
