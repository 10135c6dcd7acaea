import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../lib/logger.js';
import { createKeyStore } from '../../../jwt-factory/keystore.js';
import { createKeySealer } from '../../../jwt-factory/store/encryption.js';
import { runScript } from '../../helpers/process.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'reencrypt-test-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const storeWith = (key?: Buffer) =>
  createKeyStore({ dir, clock: () => new Date(), logger: silentLogger(), retireAfterSeconds: 86_460, pollIntervalMs: 0, ...(key ? { sealer: createKeySealer(key) } : {}) });

describe('npm run key-store -- re-encrypt', () => {
  it('seals every version with the new key (old-sealed and plain ones alike), after which the old key can go', async () => {
    const oldKey = randomBytes(32);
    const newKey = randomBytes(32);
    const sealedOld = storeWith(oldKey);
    await sealedOld.load();
    await sealedOld.getOrCreate('one', 'ES256');
    await sealedOld.rotate('one');
    const plain = storeWith();
    await plain.load();
    await plain.getOrCreate('two', 'ES256');
    const run = await runScript('scripts/key-store.ts', ['re-encrypt'], {
      env: { KEYS_DIR: dir, KEY_ENCRYPTION_KEY: newKey.toString('base64'), KEY_ENCRYPTION_KEY_OLD: oldKey.toString('base64') },
    });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('re-encrypted 3 of 3 key versions with the current KEY_ENCRYPTION_KEY\n');
    expect(await readFile(path.join(dir, 'two.json'), 'utf8')).not.toContain('"jwk"');
    const onlyNew = storeWith(newKey);
    expect(await onlyNew.load()).toEqual({ loaded: 2, skipped: [] });
    const again = await runScript('scripts/key-store.ts', ['re-encrypt'], { env: { KEYS_DIR: dir, KEY_ENCRYPTION_KEY: newKey.toString('base64') } });
    expect(again.stdout).toBe('re-encrypted 0 of 3 key versions with the current KEY_ENCRYPTION_KEY\n');
  }, 30_000);

  it('exits 2 for a missing or unknown command and 1 without an encryption key', async () => {
    expect((await runScript('scripts/key-store.ts', [])).code).toBe(2);
    expect((await runScript('scripts/key-store.ts', ['rekey'])).code).toBe(2);
    const refused = await runScript('scripts/key-store.ts', ['re-encrypt'], { env: { KEYS_DIR: dir } });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/KEY_ENCRYPTION_KEY/);
  }, 30_000);
});
