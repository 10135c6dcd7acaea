import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpClient, type HttpClient } from '../../lib/httpclient.js';

/**
 * Upstreams that misbehave at the socket level, written with node:net so the test decides
 * every byte: one that answers something that is not HTTP, and one that answers the first
 * request of a connection and resets the connection when a second request arrives on it (a
 * keep-alive socket the peer dropped as the client reused it).
 */

const OK = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: keep-alive\r\n\r\n{"ok":true}';
const REQUEST_LINE = /(?:GET|POST) \S+ HTTP\/1\.1\r\n/g;

const servers: net.Server[] = [];
let client: HttpClient | undefined;
afterEach(async () => {
  client?.close();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function upstream(onConnection: (socket: net.Socket, stats: { connections: number; requests: number }) => void) {
  const stats = { connections: 0, requests: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    stats.connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket, stats);
  });
  server.on('close', () => sockets.forEach((s) => s.destroy()));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // server.close waits for open sockets: destroy them when the test ends.
  const close = server.close.bind(server);
  server.close = ((cb?: (err?: Error) => void) => {
    sockets.forEach((s) => s.destroy());
    return close(cb);
  }) as typeof server.close;
  return { origin, stats };
}

/** Answers the first request of each connection, resets the connection on the second. */
const resetsSecondRequest = () =>
  upstream((socket, stats) => {
    let seen = '';
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
      const requests = seen.match(REQUEST_LINE)?.length ?? 0;
      if (requests === 1 && !socket.writableEnded && !(socket as net.Socket & { answered?: boolean }).answered) {
        (socket as net.Socket & { answered?: boolean }).answered = true;
        stats.requests += 1;
        socket.write(OK);
      } else if (requests >= 2) {
        stats.requests += 1;
        socket.resetAndDestroy();
      }
    });
  });

describe('httpclient against upstreams that break the connection', () => {
  it('an answer that is not HTTP is 502 dependency_bad_answer, as the README promises', async () => {
    const { origin } = await upstream((socket) => socket.once('data', () => socket.end('SSH-2.0-OpenSSH_9.6\r\n\r\n')));
    client = createHttpClient({ timeoutMs: 2000 });
    await expect(client.request({ dependency: 'serviceb', method: 'GET', url: `${origin}/x` })).rejects.toMatchObject({
      status: 502,
      code: 'dependency_bad_answer',
      details: { dependency: 'serviceb' },
    });
  });

  it('a GET on a kept-alive socket the upstream resets is retried once on a fresh socket and succeeds', async () => {
    const { origin, stats } = await resetsSecondRequest();
    client = createHttpClient({ timeoutMs: 2000 });
    const get = () => client!.request({ dependency: 'jwt-factory', method: 'GET', url: `${origin}/x` });
    expect((await get()).status).toBe(200);
    expect((await get()).status).toBe(200);
    // The second call went out twice: on the reused socket (reset), then on a new connection.
    expect(stats).toEqual({ connections: 2, requests: 3 });
  });

  it('a POST marked idempotent is retried the same way; an unmarked POST is not and answers 503 dependency_down', async () => {
    const { origin, stats } = await resetsSecondRequest();
    client = createHttpClient({ timeoutMs: 2000 });
    const post = (idempotent?: boolean) => client!.request({ dependency: 'jwt-factory', method: 'POST', url: `${origin}/verify/x`, body: { a: 1 }, idempotent });
    expect((await post(true)).status).toBe(200);
    expect((await post(true)).status).toBe(200);
    expect(stats.connections).toBe(2);
    await expect(post()).rejects.toMatchObject({ status: 503, code: 'dependency_down' });
    expect(stats.connections).toBe(2);
  });

  it('a reset on a fresh socket is not retried: 503 dependency_down after one attempt', async () => {
    const { origin, stats } = await upstream((socket, s) =>
      socket.once('data', () => {
        s.requests += 1;
        socket.resetAndDestroy();
      }),
    );
    client = createHttpClient({ timeoutMs: 2000 });
    await expect(client.request({ dependency: 'serviceb', method: 'GET', url: `${origin}/x` })).rejects.toMatchObject({ status: 503, code: 'dependency_down' });
    expect(stats).toEqual({ connections: 1, requests: 1 });
  });
});
