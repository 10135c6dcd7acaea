import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadFactoryConfig } from '../../jwt-factory/config.js';
import { createApp } from '../../jwt-factory/http.js';
import { createKeyGenerator } from '../../jwt-factory/keygen.js';
import { createKeyStore } from '../../jwt-factory/keystore.js';
import { silentLogger } from '../../lib/logger.js';
import { manualClock } from './harness.js';

/** A generator the test releases by hand, counting how many generations run at once. */
function gatedGenerator() {
  const gates: Array<() => void> = [];
  let running = 0;
  let peak = 0;
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return {
    generate: async (): Promise<KeyObject> => {
      running += 1;
      peak = Math.max(peak, running);
      await new Promise<void>((resolve) => gates.push(resolve));
      running -= 1;
      return key;
    },
    /** Lets the oldest waiting generation finish. */
    releaseOne: () => gates.shift()?.(),
    started: () => gates.length,
    peak: () => peak,
  };
}

/**
 * Resolves once `condition` holds. The bound is wall time, not a count of event-loop turns: on a
 * loaded machine a loopback request can take many turns to reach its handler.
 */
async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  expect(condition()).toBe(true);
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'keygen-test-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('the bounded key generator', () => {
  it('runs at most `concurrency` generations at once and starts the next as one ends', async () => {
    const gate = gatedGenerator();
    const keygen = createKeyGenerator({ concurrency: 2, maxQueued: 10, generate: gate.generate });
    const all = Promise.all(Array.from({ length: 5 }, () => keygen.generate('ES256')));
    await until(() => gate.started() === 2);
    expect(keygen.load()).toEqual({ running: 2, queued: 3 });
    for (let done = 0; done < 5; done += 1) {
      await until(() => gate.started() > 0);
      gate.releaseOne();
    }
    await all;
    expect(gate.peak()).toBe(2);
    expect(keygen.load()).toEqual({ running: 0, queued: 0 });
  });

  it('refuses at once with 503 key_generation_busy and a Retry-After when the queue is full', async () => {
    const gate = gatedGenerator();
    const keygen = createKeyGenerator({ concurrency: 1, maxQueued: 1, generate: gate.generate });
    const first = keygen.generate('ES256');
    const second = keygen.generate('ES256');
    await expect(keygen.generate('ES256')).rejects.toMatchObject({ code: 'key_generation_busy', status: 503, headers: { 'Retry-After': expect.stringMatching(/^[1-9]\d*$/) } });
    await until(() => gate.started() === 1);
    gate.releaseOne();
    await until(() => gate.started() === 1);
    gate.releaseOne();
    await Promise.all([first, second]);
  });
});

describe('key creation through the queue', () => {
  /** A factory app whose store generates through a gated queue of one running and one waiting. */
  async function gatedFactory() {
    const gate = gatedGenerator();
    const time = manualClock();
    const config = loadFactoryConfig({ KEYS_DIR: dir, ALGORITHM: 'ES256' });
    const keygen = createKeyGenerator({ concurrency: 1, maxQueued: 1, generate: gate.generate });
    const keystore = createKeyStore({ dir, clock: time.clock, logger: silentLogger(), defaultAlg: 'ES256', retireAfterSeconds: 60, generateKey: keygen.generate });
    await keystore.load();
    return { gate, app: createApp({ config, keystore, logger: silentLogger(), clock: time.clock }) };
  }

  it('a creation past the queue answers 503 key_generation_busy with Retry-After and writes nothing', async () => {
    const { gate, app } = await gatedFactory();
    const creating = [request(app).post('/keys/one').then((r) => r), request(app).post('/keys/two').then((r) => r)];
    await until(() => gate.started() === 1);
    const refused = await request(app).post('/issueToken/three').send({ aud: 'x' });
    expect(refused.status).toBe(503);
    expect(refused.headers['content-type']).toMatch(/^application\/json/);
    expect(refused.headers['retry-after']).toMatch(/^[1-9]\d*$/);
    expect(refused.body.error.code).toBe('key_generation_busy');
    expect(await readdir(dir)).toEqual([]);
    gate.releaseOne();
    await until(() => gate.started() === 1);
    gate.releaseOne();
    const answers = await Promise.all(creating);
    expect(answers.map((a) => a.status)).toEqual([200, 200]);
    expect((await readdir(dir)).sort()).toEqual(['one.json', 'two.json']);
  });

  it('issuance for an existing key does not wait behind generations in progress', async () => {
    const { gate, app } = await gatedFactory();
    const existing = request(app).post('/keys/known').then((r) => r);
    await until(() => gate.started() === 1);
    gate.releaseOne();
    expect((await existing).status).toBe(200);
    const stalled = request(app).post('/keys/slow').then((r) => r);
    await until(() => gate.started() === 1);
    const issued = await request(app).post('/issueToken/known').send({ aud: 'x' });
    expect(issued.status).toBe(200);
    expect(issued.headers['content-type']).toMatch(/^text\/plain/);
    gate.releaseOne();
    expect((await stalled).status).toBe(200);
  });
});
