import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../lib/logger.js';
import { loadFactoryConfig, type FactoryConfig } from '../../jwt-factory/config.js';
import { createApp } from '../../jwt-factory/http.js';
import { createKeyStore } from '../../jwt-factory/keystore.js';

/** A clock the test moves by hand: rotation and expiry are tested at exact instants. */
export function manualClock(start = new Date(Math.floor(Date.now() / 1000) * 1000)) {
  let now = start;
  return {
    clock: () => now,
    set: (date: Date) => {
      now = date;
    },
    advance: (ms: number) => {
      now = new Date(now.getTime() + ms);
    },
  };
}

/** A factory app over a fresh temp KEYS_DIR with an injected clock; `cleanup` removes the dir. */
export async function makeFactory(env: Record<string, string> = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), 'factory-test-'));
  const config: FactoryConfig = loadFactoryConfig({ KEYS_DIR: dir, PUBLIC_URL: 'http://factory.test:5555', ...env });
  const time = manualClock();
  const logger = silentLogger();
  const keystore = createKeyStore({
    dir,
    clock: time.clock,
    logger,
    defaultAlg: config.ALGORITHM,
    retireAfterSeconds: config.MAX_TOKEN_TTL + config.CLOCK_TOLERANCE,
    maxKeys: config.MAX_KEYS,
    maxVersions: config.MAX_KEY_VERSIONS,
  });
  await keystore.load();
  const app = createApp({ config, keystore, logger, clock: time.clock });
  return { app, dir, config, keystore, time, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
