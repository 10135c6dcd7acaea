import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../lib/ports.js';

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
