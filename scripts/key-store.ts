import { parseArgs } from 'node:util';
import { ConfigError } from '../lib/errors.js';
import { createLogger } from '../lib/logger.js';
import { loadFactoryConfig } from '../jwt-factory/config.js';
import { openKeyStore } from '../jwt-factory/store/open.js';

/**
 * `npm run key-store -- re-encrypt`: after KEY_ENCRYPTION_KEY changed (the previous one in
 * KEY_ENCRYPTION_KEY_OLD), seals every private key of the store KEY_STORE names with the new
 * key, so the old one can be dropped. Safe while factories run: each rewrite is a conditional
 * update (PostgreSQL) or happens under the keyId's lock (files).
 */

const USAGE = `Usage: npm run key-store -- re-encrypt

Seals every private key of the factory's key store with KEY_ENCRYPTION_KEY, opening the ones
sealed with KEY_ENCRYPTION_KEY_OLD (or stored plain). Reads the factory's settings from the
environment: KEY_STORE, KEYS_DIR, KEY_ENCRYPTION_KEY or KEY_ENCRYPTION_KEY_FILE, KEY_ENCRYPTION_KEY_OLD.

  --help   this text

Exit status: 0 done, 1 refused or failed, 2 bad usage.`;

async function main(argv: string[]): Promise<number> {
  let positionals: string[];
  let help: boolean | undefined;
  try {
    ({ positionals, values: { help } } = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { help: { type: 'boolean', short: 'h' } } }));
  } catch (err) {
    process.stderr.write(`key-store: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] !== 're-encrypt') {
    process.stderr.write(`key-store: ${positionals[0] === undefined ? 'a command is required' : `unknown command "${positionals[0]}"`}\n${USAGE}\n`);
    return 2;
  }
  try {
    const config = loadFactoryConfig(process.env);
    if (config.KEY_ENCRYPTION_KEY === undefined && config.KEY_ENCRYPTION_KEY_FILE === undefined) {
      throw new ConfigError('KEY_ENCRYPTION_KEY', 'is required: it is the key every private key is sealed with');
    }
    const logger = createLogger({ level: 'warn', name: 'key-store' });
    const store = openKeyStore(config, { clock: () => new Date(), logger });
    await store.load();
    try {
      const { versions, resealed, unreadable } = await store.reseal();
      process.stdout.write(`re-encrypted ${resealed} of ${versions} key versions with the current KEY_ENCRYPTION_KEY\n`);
      if (unreadable > 0) {
        process.stderr.write(`key-store: ${unreadable} key versions open with neither KEY_ENCRYPTION_KEY nor KEY_ENCRYPTION_KEY_OLD: they were left as they are\n`);
        return 1;
      }
    } finally {
      await store.close();
    }
    return 0;
  } catch (err) {
    process.stderr.write(`key-store: ${(err as Error).message}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
