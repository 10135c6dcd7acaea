import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ISSUE_CLAIMS } from '../../scripts/bench/factory.js';
import { startFloorServer, type FloorServer } from '../../scripts/bench/floors.js';
import type { LoadTarget } from '../../scripts/bench/load.js';
import { PEERS } from '../../scripts/bench/peers.js';
import type { Launched } from '../../scripts/bench/launch.js';

/** Sends the request a load target repeats, once. */
const once = (t: LoadTarget) =>
  fetch(t.url, { method: t.method ?? 'GET', headers: { ...(t.body ? { 'content-type': 'application/json' } : {}), ...t.headers }, body: t.body });

let tmp: string;
const started: Launched[] = [];
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'bench-contenders-'));
});
afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await rm(tmp, { recursive: true, force: true });
});

describe('bench contenders do the job they are compared on', () => {
  let floor: FloorServer;
  beforeAll(async () => {
    floor = await startFloorServer('express', 'RS256', path.join(tmp, 'floor.log'));
    started.push(floor.process);
  });

  it('the express floor signs an RS256 JWT with the factory claims and header shape, and verifies its own token', async () => {
    const issued = await once(floor.issue);
    expect(issued.status).toBe(200);
    expect(issued.headers.get('content-type')).toMatch(/^text\/plain/);
    const token = await issued.text();
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'RS256', kid: 'floor', typ: 'JWT' });
    expect(decodeJwt(token)).toMatchObject({ ...ISSUE_CLAIMS, iss: 'https://jwt-factory/', sub: 'bench', jti: expect.any(String) });
    const verified = await once(floor.verify);
    expect(verified.status).toBe(200);
    expect(verified.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await verified.json()).toMatchObject({ valid: true, claims: { aud: ISSUE_CLAIMS.aud } });
  });

  it.each([
    ['oidc-provider-cc', 'oidc-provider'],
    ['factory-cc', 'the factory'],
  ])('%s: %s answers client_credentials with an RS256 JWT access token (RFC 9068 at+jwt) for the bench audience, and 401 invalid_client for a wrong secret', async (id) => {
    const peer = PEERS.find((p) => p.id === id)!;
    expect(peer.unavailable()).toBeUndefined();
    const { process: server, target } = await peer.start(tmp, { logLevel: 'warn' });
    started.push(server);
    const res = await once(target);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await res.json()) as { access_token: string; token_type: string; expires_in: number };
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 3600 });
    expect(decodeProtectedHeader(body.access_token)).toMatchObject({ alg: 'RS256', typ: 'at+jwt' });
    expect(decodeJwt(body.access_token)).toMatchObject({ aud: ISSUE_CLAIMS.aud, scope: 'read write', client_id: 'bench-client', sub: 'bench-client' });
    const wrongSecret = await once({ ...target, headers: { ...target.headers, authorization: `Basic ${Buffer.from('bench-client:nope').toString('base64')}` } });
    expect(wrongSecret.status).toBe(401);
    expect(((await wrongSecret.json()) as { error: string }).error).toBe('invalid_client');
  });
});
