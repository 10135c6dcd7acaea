import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadOidcConfig } from '../../jwt-factory/oidc/config.js';
import { LOGIN_CLIENT, LOGIN_GATEWAY_PORT, demoOidcConfig } from '../../scripts/demo-browser.js';
import { ROOT } from '../helpers/process.js';

/** The OIDC_CONFIG the demo gives the factory when its login gateway cannot listen on 8080. */

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'demo-oidc-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("the demo's OIDC config for the browser row", () => {
  it('on 8080 is the committed demo file itself', async () => {
    expect(await demoOidcConfig(LOGIN_GATEWAY_PORT, dir)).toBe(path.join(ROOT, 'jwt-factory', 'oidc.demo.yaml'));
  });

  it("on another port is a copy whose mesh-gateway URIs name that port, every other client and user unchanged, and the factory loads it", async () => {
    const file = await demoOidcConfig(40123, dir);
    expect(path.dirname(file)).toBe(dir);
    const original = parse(await readFile(path.join(ROOT, 'jwt-factory', 'oidc.demo.yaml'), 'utf8')) as { clients: Array<Record<string, unknown>>; users: unknown };
    const copy = parse(await readFile(file, 'utf8')) as typeof original;
    const gateway = copy.clients.find((c) => c.client_id === LOGIN_CLIENT.id)!;
    expect(gateway.redirect_uris).toEqual(['http://localhost:40123/callback', 'http://127.0.0.1:40123/callback']);
    expect(gateway.post_logout_redirect_uris).toEqual(['http://localhost:40123/', 'http://127.0.0.1:40123/']);
    const others = (c: { clients: Array<Record<string, unknown>> }) => c.clients.filter((x) => x.client_id !== LOGIN_CLIENT.id);
    expect(others(copy)).toEqual(others(original));
    expect(copy.users).toEqual(original.users);
    expect(loadOidcConfig(file).clients.get(LOGIN_CLIENT.id)!.redirect_uris).toEqual(['http://localhost:40123/callback', 'http://127.0.0.1:40123/callback']);
  });
});
