import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runScript } from '../helpers/process.js';

/** Runs `tsx scripts/demo.ts ...args` to its end; resolves with its exit code and output (stdout, then stderr). */
async function runDemo(args: string[]): Promise<{ code: number | null; out: string }> {
  const { code, stdout, stderr } = await runScript('scripts/demo.ts', args, { timeoutMs: 110_000 });
  return { code, out: stdout + stderr };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

let state: string;
beforeAll(async () => {
  state = await mkdtemp(path.join(tmpdir(), 'demo-state-'));
});
afterAll(async () => {
  await rm(state, { recursive: true, force: true });
});

describe('npm run demo', () => {
  it('plays the twelve calls with the expected outcomes, exits 0 and leaves no process behind', async () => {
    const { code, out } = await runDemo(['--ports', 'auto', '--state-dir', state]);
    expect(out).toContain('Verdict: all 12 outcomes as expected; the mesh rules answered all 7 calls as Istio would.');
    expect(code).toBe(0);
    const rows = out.split('\n').filter((l) => /^\| \d /.test(l));
    expect(rows).toHaveLength(12);
    for (const row of rows) expect(row).toMatch(/\| ok \|$/);
    // The same receiver behind k8s/istio, enforced by mesh-gateway: Envoy's exact answers.
    const mesh = out.slice(out.indexOf('| through the mesh rules to serviceb'), out.indexOf('| the webui in a browser')).split('\n').filter((l) => /\| ok \|$/.test(l));
    expect(mesh.map((l) => l.split('|')[3]!.trim())).toEqual([
      '200 B valid',
      '403 RBAC: access denied',
      '401 Jwt is expired',
      '403 Audiences in Jwt are not allowed',
      "401 Jwks doesn't have key to match kid or alg from Jwt",
      // Scenario 6's id token from the password grant, shown to a gateway whose clock is two hours on.
      '401 Jwt is expired',
      // Scenario 5's expired variant: alice's access token after her login, to the same later gateway.
      '401 Jwt is expired',
    ]);
    // The factory runs with ISSUE_AUTH=client: an anonymous caller and a sub override are refused.
    const issuance = out.slice(out.indexOf('| who may get which token'), out.indexOf('| through the mesh rules')).split('\n').filter((l) => /\| ok \|$/.test(l));
    expect(issuance.map((l) => l.split('|')[3]!.trim())).toEqual(['401 invalid_client', '400 claim_not_allowed']);
    // Scenario 6 went through the mesh rules: the id token for cli reached serviceb and was valid there too.
    expect(rows.find((r) => r.startsWith('| 6 '))).toMatch(/\| B valid +\| B valid +\|/);
    // Scenario 5 went through them too (serviceb-allow-user-access-token), and 7's expired variant
    // is refused at the exchange: a delegation cannot outlive the user's token.
    expect(rows.find((r) => r.startsWith('| 5 '))).toMatch(/\| B valid +\| B valid +\|/);
    expect(rows.find((r) => r.startsWith('| 7 her token, once expired'))).toMatch(/\| 403 token_exchange_refused: [^|]*jwt expired +\| +\d+ \| ok \|$/);
    // The browser row: chromium logged alice in through mesh-gateway's login mode, every step as expected.
    const browser = out.slice(out.indexOf('| the webui in a browser')).split('\n').filter((l) => /^\| [a-z]/.test(l) && !l.startsWith('| the webui'));
    expect(browser).toHaveLength(8);
    for (const row of browser) expect(row).toMatch(/\| ok \|$/);
    expect(browser.find((r) => r.startsWith('| the next API call'))).toContain('401 login_required');
    expect(out).toMatch(/Browser: all 8 steps of the login at the gateway as expected/);
    const pids = [...out.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    expect(pids).toHaveLength(8);
    expect(pids.filter(alive)).toEqual([]);
    // Everything it made is in the state folder: the certificates, the factory's keys, servicea's key pair.
    expect(await readdir(path.join(state, 'certs'))).toContain('ca.pem');
    expect(await readdir(path.join(state, 'keys'))).toEqual(expect.arrayContaining(['servicea.json', 'servicea-self']));
    expect((await stat(path.join(state, 'keys', 'servicea.json'))).mode & 0o777).toBe(0o600);
  }, 120_000);

  it('names the taken port and who needs it, exits 1 and starts nothing', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as { port: number }).port;
    try {
      const ports = [await freePort(), await freePort(), taken, await freePort(), await freePort(), await freePort()];
      const { code, out } = await runDemo(['--ports', ports.join(','), '--state-dir', state]);
      expect(out).toContain(`demo: Port ${taken} is already in use, and serviceb needs it`);
      expect(out).not.toContain('started ');
      expect(code).toBe(1);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  }, 60_000);

  it('refuses a LOG_LEVEL it cannot pass on with exit 2, naming the variable', async () => {
    const { code, stderr } = await runScript('scripts/demo.ts', ['--ports', 'auto'], { env: { LOG_LEVEL: 'loud' }, timeoutMs: 60_000 });
    expect(code).toBe(2);
    expect(stderr).toContain('Invalid setting LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent (got "loud")');
  }, 60_000);

  it('refuses a malformed --ports with exit 2 and the accepted forms', async () => {
    const { code, out } = await runDemo(['--ports', '1,2,3']);
    expect(code).toBe(2);
    expect(out).toContain('--ports must be default, auto or six different ports');
  }, 60_000);
});
