import http from 'node:http';
import https from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ensureCertificates, loadServerTls } from '../../lib/certs.js';
import { createHttpClient, parseAnswer, type HttpClient } from '../../lib/httpclient.js';
import { freePort } from '../helpers/process.js';

let tmp: string;
let client: HttpClient;
const servers: http.Server[] = [];
const origins: Record<string, string> = {};

const listenOn = async (name: string, server: http.Server, scheme: 'http' | 'https') => {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origins[name] = `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'httpclient-'));
  await Promise.all([ensureCertificates(path.join(tmp, 'suite'), { services: ['serviceb'] }), ensureCertificates(path.join(tmp, 'foreign'), { services: ['serviceb'] })]);
  const suite = await loadServerTls(path.join(tmp, 'suite'), 'serviceb');
  const foreign = await loadServerTls(path.join(tmp, 'foreign'), 'serviceb');
  const hello = (_req: http.IncomingMessage, res: http.ServerResponse) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  await listenOn('trusted', https.createServer({ cert: suite.cert, key: suite.key }, hello) as unknown as http.Server, 'https');
  await listenOn('foreign', https.createServer({ cert: foreign.cert, key: foreign.key }, hello) as unknown as http.Server, 'https');
  await listenOn('hang', http.createServer(() => undefined), 'http');
  await listenOn('huge', http.createServer((_req, res) => res.end('x'.repeat(4096))), 'http');
  origins.closed = `http://127.0.0.1:${await freePort()}`;
  client = createHttpClient({ ca: suite.ca, timeoutMs: 300, maxBytes: 1024 });
});

afterAll(async () => {
  client?.close();
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await rm(tmp, { recursive: true, force: true });
});

const get = (name: string) => client.request({ dependency: 'serviceb', method: 'GET', url: `${origins[name]}/x` });

describe('createHttpClient', () => {
  it('reaches an HTTPS peer whose certificate the suite CA signed', async () => {
    const answer = await get('trusted');
    expect(answer.status).toBe(200);
    expect(parseAnswer('serviceb', answer, z.object({ ok: z.literal(true) }))).toEqual({ ok: true });
  });

  it('reuses one keep-alive connection for consecutive calls to the same peer', async () => {
    const server = servers[0]!;
    let connections = 0;
    const count = () => (connections += 1);
    server.on('secureConnection', count);
    try {
      await get('trusted');
      await get('trusted');
      await get('trusted');
    } finally {
      server.off('secureConnection', count);
    }
    expect(connections).toBeLessThanOrEqual(1);
  });

  it('refuses a peer certificate signed by another CA with 502 dependency_untrusted', async () => {
    await expect(get('foreign')).rejects.toMatchObject({ status: 502, code: 'dependency_untrusted', details: { dependency: 'serviceb' } });
  });

  it('answers 503 dependency_down when nothing listens', async () => {
    await expect(get('closed')).rejects.toMatchObject({ status: 503, code: 'dependency_down', details: { dependency: 'serviceb' } });
  });

  it('answers 504 dependency_timeout when the peer never answers', async () => {
    await expect(get('hang')).rejects.toMatchObject({ status: 504, code: 'dependency_timeout' });
  });

  it('answers 502 dependency_bad_answer when the answer is larger than the limit', async () => {
    await expect(get('huge')).rejects.toMatchObject({ status: 502, code: 'dependency_bad_answer' });
  });

  it('parseAnswer refuses text that is not JSON, or JSON of another shape, with 502', () => {
    const schema = z.object({ ok: z.boolean() });
    expect(() => parseAnswer('jwt-factory', { status: 200, contentType: 'text/html', text: '<html>' }, schema)).toThrow(expect.objectContaining({ status: 502, code: 'dependency_bad_answer' }));
    expect(() => parseAnswer('jwt-factory', { status: 200, contentType: 'application/json', text: '{"ok":"yes"}' }, schema)).toThrow(/unexpected JSON shape/);
  });
});
