import http from 'node:http';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadServiceConfig } from '../../app/config.js';
import { loadFactoryConfig } from '../../jwt-factory/config.js';
import { serverLimits } from '../../lib/config.js';
import { listen } from '../../lib/server.js';
import { startProcess } from '../helpers/process.js';

/** What a raw socket saw before the server closed it: the bytes, and the ms it stayed open. */
function openSocket(port: number, write: string): Promise<{ text: string; openMs: number; socket: net.Socket; closed: Promise<{ text: string; openMs: number }> }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = net.connect({ port, host: '127.0.0.1' });
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    const closed = new Promise<{ text: string; openMs: number }>((done) => socket.on('close', () => done({ text, openMs: performance.now() - started })));
    socket.on('error', () => undefined);
    socket.once('connect', () => {
      if (write) socket.write(write);
      resolve({ text, openMs: 0, socket, closed });
    });
    socket.once('error', reject);
  });
}

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A server that answers 200 "ok" once it has read the whole request. */
async function serve(limits: { headersTimeoutMs: number; requestTimeoutMs: number; maxConnections: number }): Promise<number> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  servers.push(server);
  return listen(server, 0, '127.0.0.1', limits);
}

describe('connection limits (lib/server.ts listen)', () => {
  it('a client that never finishes its headers is answered 408 and cut off after headersTimeout, not Node\'s 60 s', async () => {
    const port = await serve({ headersTimeoutMs: 300, requestTimeoutMs: 2000, maxConnections: 10 });
    const slow = await openSocket(port, 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    const { text, openMs } = await slow.closed;
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(openMs).toBeGreaterThanOrEqual(300);
    expect(openMs).toBeLessThan(2000);
  });

  it('a client that trickles its body is answered 408 and cut off after requestTimeout', async () => {
    const port = await serve({ headersTimeoutMs: 300, requestTimeoutMs: 600, maxConnections: 10 });
    const slow = await openSocket(port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789');
    const { text, openMs } = await slow.closed;
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(openMs).toBeGreaterThanOrEqual(600);
    expect(openMs).toBeLessThan(3000);
  });

  it('past maxConnections a new socket is closed at once; keep-alive sockets in use stay and serve', async () => {
    const port = await serve({ headersTimeoutMs: 2000, requestTimeoutMs: 5000, maxConnections: 2 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    const get = () =>
      new Promise<string>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d));
          res.on('end', () => resolve(`${res.statusCode} ${res.headers.connection} ${body}`));
        }).on('error', reject);
      });
    expect(await Promise.all([get(), get()])).toEqual(['200 keep-alive ok', '200 keep-alive ok']);
    const third = await openSocket(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const refused = await third.closed;
    expect(refused.text).toBe('');
    // The two kept-alive sockets still answer.
    expect(await Promise.all([get(), get()])).toEqual(['200 keep-alive ok', '200 keep-alive ok']);
    agent.destroy();
  });
});

describe('the factory process applies HEADERS_TIMEOUT_MS', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a slow client is cut off after HEADERS_TIMEOUT_MS while /healthz keeps answering', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'limits-'));
    const factory = await startProcess('jwt-factory/main.ts', { env: { PORT: '0', HOST: '127.0.0.1', KEYS_DIR: dir, HEADERS_TIMEOUT_MS: '400' } });
    try {
      const slow = await openSocket(factory.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n');
      const health = await fetch(`http://127.0.0.1:${factory.port}/healthz`);
      expect(health.status).toBe(200);
      const { text, openMs } = await slow.closed;
      expect(text).toMatch(/^HTTP\/1\.1 408 /);
      expect(openMs).toBeLessThan(3000);
    } finally {
      await factory.stop();
    }
  });
});

describe('the limit settings', () => {
  it('are parsed by the factory and the services alike; a bad one names the variable', () => {
    expect(serverLimits(loadFactoryConfig({ HEADERS_TIMEOUT_MS: '700', MAX_CONNECTIONS: '12' }))).toEqual({ headersTimeoutMs: 700, requestTimeoutMs: 10_000, maxConnections: 12 });
    expect(loadServiceConfig('serviceb', { REQUEST_TIMEOUT_MS: '1500' }).limits).toEqual({ headersTimeoutMs: 5000, requestTimeoutMs: 1500, maxConnections: 1000 });
    expect(() => loadFactoryConfig({ MAX_CONNECTIONS: 'lots' })).toThrow('Invalid setting MAX_CONNECTIONS: must be a number (got "lots")');
    expect(() => loadServiceConfig('servicea', { HEADERS_TIMEOUT_MS: '5' })).toThrow(/Invalid setting HEADERS_TIMEOUT_MS: must be at least 100/);
  });
});
