import { execFile } from 'node:child_process';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../lib/ports.js';
import { postgresBinDir } from './tools.js';

const run = promisify(execFile);

/** A throwaway PostgreSQL cluster: of one test file, or of one bench run. */
export interface ThrowawayPostgres {
  /** postgres://postgres@127.0.0.1:<port>/postgres (trust on loopback only). */
  url: string;
  port: number;
  /** Stops the server (fast shutdown: connections are cut), keeping its data. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** `pg_dump --data-only` of the database: what a backup would hold. */
  dump(): Promise<string>;
  /** Runs one SQL statement with psql and returns its unaligned output. */
  sql(statement: string): Promise<string>;
  /** Stops the server and removes its folder. */
  remove(): Promise<void>;
}

/**
 * Starts a fresh cluster: initdb in a temp folder as the `postgres` user (PostgreSQL refuses
 * to run as root), trust authentication, listening on 127.0.0.1 only at a free port, fsync
 * off (a test database need not survive a power cut). `pg_ctl -w` waits until it accepts
 * connections. On any failure the folder and the server are removed before the error is thrown.
 */
export async function startPostgres(): Promise<ThrowawayPostgres> {
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error('PostgreSQL (Debian package postgresql) is not installed: run "bash scripts/install-tools.sh" as root');
  const asRoot = process.getuid?.() === 0;
  const dir = await mkdtemp(path.join(tmpdir(), 'pg-test-'));
  const data = path.join(dir, 'data');
  const port = await freePort();
  const as = (cmd: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', path.join(bin, cmd), ...args]) : run(path.join(bin, cmd), args);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`;
  const ctl = (...args: string[]) => as('pg_ctl', ['-D', data, '-l', path.join(dir, 'log'), ...args]);
  let running = false;
  const stop = async () => {
    if (!running) return;
    await ctl('stop', '-m', 'fast', '-w');
    running = false;
  };
  const start = async () => {
    await ctl('start', '-w', '-t', '30', '-o', options);
    running = true;
  };
  const remove = async () => {
    await stop().catch(() => ctl('stop', '-m', 'immediate').catch(() => undefined));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    if (asRoot) await chown(dir, ...(await postgresIds()));
    await as('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
    await start();
  } catch (err) {
    await remove();
    throw err;
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    stop,
    start,
    remove,
    dump: async () => (await as('pg_dump', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '--data-only', 'postgres'])).stdout,
    sql: async (statement) => (await as('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-At', '-c', statement])).stdout.trim(),
  };
}

/** The uid and gid of the `postgres` user. */
async function postgresIds(): Promise<[number, number]> {
  const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return [Number(uid.stdout.trim()), Number(gid.stdout.trim())];
}
