import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { startPostgres, type ThrowawayPostgres } from '../postgres.js';
import type { Algorithm } from './args.js';
import { benchKeyId, issueTarget, prepareKey, startFactory } from './factory.js';
import type { Launched } from './launch.js';
import type { LoadTarget } from './load.js';

/**
 * The store row: the same issuance as the factory's /issueToken row, by a factory whose keys live
 * in PostgreSQL (KEY_STORE=postgres://, a throwaway cluster started for the run). A known key is
 * signed from memory, so the row should cost what the file store's does: the database is only
 * asked on a miss, a create or a rotation, never while signing.
 */
export interface StoreContender {
  factory: Launched;
  target: LoadTarget;
  postgres: ThrowawayPostgres;
}

/** Starts PostgreSQL and a factory on it with the bench's log level; creates the bench key there. */
export async function startPostgresFactory(alg: Algorithm, tmpDir: string, logLevel: string): Promise<StoreContender> {
  const postgres = await startPostgres();
  try {
    const factory = await startFactory({
      keysDir: path.join(tmpDir, 'keys-postgres'),
      logLevel,
      workers: undefined,
      logFile: path.join(tmpDir, 'factory-postgres.log'),
      // The database never holds a plain private key: a fresh sealing key for the run.
      env: { KEY_STORE: postgres.url, KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') },
    });
    const base = `http://127.0.0.1:${factory.port}`;
    const key = await prepareKey(base, benchKeyId(alg), alg);
    return { factory, target: issueTarget(base, key), postgres };
  } catch (err) {
    await postgres.remove();
    throw err;
  }
}
