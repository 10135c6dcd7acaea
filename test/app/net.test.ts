import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../lib/ports.js';
import { KEEP_ALIVE_MS, listen } from '../../lib/server.js';
import http from 'node:http';

describe('freePort', () => {
  it('hands out 200 different ports in a row, each of which can really be bound', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 200; i += 1) ports.push(await freePort());
    expect(new Set(ports).size).toBe(200);
    const last = ports.at(-1)!;
    const srv = createServer();
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(last, '127.0.0.1', resolve);
    });
    await new Promise((resolve) => srv.close(resolve));
  });
});

describe('listen', () => {
  it('binds port 0, answers the real port, and keeps idle sockets KEEP_ALIVE_MS (65 s), not Node\'s 5 s', async () => {
    const server = http.createServer((_req, res) => res.end('ok'));
    const port = await listen(server, 0, '127.0.0.1');
    try {
      expect(port).toBeGreaterThan(0);
      expect(server.keepAliveTimeout).toBe(65_000);
      expect(KEEP_ALIVE_MS).toBe(65_000);
      expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('ok');
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
