import cluster from 'node:cluster';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type RequestListener } from 'node:http';
import path from 'node:path';
import dotenv from 'dotenv';
import { serverLimits } from '../lib/config.js';
import { ConfigError } from '../lib/errors.js';
import { createLogger, errorFields, type Logger } from '../lib/logger.js';
import { createPoolSet } from '../lib/postgres.js';
import { describeListenError, drainOnSignal, listen } from '../lib/server.js';
import { FACTORY_SETTINGS, isLoopbackHost, listeningConfig, loadFactoryConfig, type FactoryConfig } from './config.js';
import { createApp } from './http.js';
import { createKeyGenerator } from './keygen.js';
import { createRotationScheduler } from './rotation.js';
import { FACTORY_POOL, openKeyStore, openOidcStore } from './store/open.js';
import { loadOidcConfig, ownedKeyIds, type OidcConfig } from './oidc/config.js';
import { createOidcProvider } from './oidc/provider.js';
import { hashSecret } from './oidc/secrets.js';

/** Messages between the cluster primary and its workers. */
type WorkerMessage =
  | { type: 'listening'; port: number }
  | { type: 'listen-failed'; message: string }
  | { type: 'key-changed'; keyId: string };

/** The environment: an optional `.env` in the working directory, overridden by the real environment. */
function readEnv(): Record<string, string | undefined> {
  const file = path.resolve('.env');
  const fromFile = existsSync(file) ? dotenv.parse(readFileSync(file)) : {};
  return { ...fromFile, ...process.env };
}

/** Prints one sentence and exits 1 (a bad setting or a taken port). */
function fail(sentence: string): never {
  process.stderr.write(`jwt-factory: ${sentence.replace(/\.?$/, '.')}\n`);
  process.exit(1);
}

/** One serving process: load keys, listen, build the app for the port it got; tells the primary about key changes when clustered. */
async function serve(config: FactoryConfig, logger: Logger, oidcConfig: OidcConfig | undefined): Promise<void> {
  const clock = () => new Date();
  // One pool per database for the process: the keys and the OIDC state share KEY_STORE's.
  const pools = createPoolSet(FACTORY_POOL);
  const keystore = openKeyStore(config, {
    clock,
    logger,
    pools,
    generateKey: createKeyGenerator({ concurrency: config.KEYGEN_CONCURRENCY, maxQueued: config.KEYGEN_QUEUE, maxWaitMs: config.KEYGEN_MAX_WAIT_MS }).generate,
  });
  await keystore.load();
  // Every process checks: the store's conditional rotation lets exactly one win per due key.
  const rotation = createRotationScheduler({ keystore, clock, logger, defaults: { interval: config.ROTATION_INTERVAL, publishAhead: config.ROTATION_PUBLISH_AHEAD } });
  rotation.start();
  if (cluster.isWorker) {
    keystore.onChange((keyId, origin) => {
      if (origin === 'local') process.send?.({ type: 'key-changed', keyId } satisfies WorkerMessage);
    });
    process.on('message', (message: WorkerMessage) => {
      if (message.type === 'key-changed') void keystore.reload(message.keyId);
    });
  }
  const oidcStore = oidcConfig ? await openOidcStore(config, { clock, logger, pools }) : undefined;
  // Bind before building the app: with PORT=0 the default PUBLIC_URL (jwks_uri, the OpenID
  // endpoints, the login form) can only name the port once the server has it. A request that
  // arrives meanwhile waits for the app rather than finding no handler.
  let appReady!: (app: RequestListener) => void;
  const app = new Promise<RequestListener>((resolve) => (appReady = resolve));
  const early: RequestListener = (req, res) => void app.then((handle) => handle(req, res));
  const server = createServer(early);
  let port: number;
  try {
    port = await listen(server, config.PORT, config.HOST, serverLimits(config));
  } catch (err) {
    const sentence = describeListenError(err as NodeJS.ErrnoException, config.PORT, config.HOST);
    if (cluster.isWorker) process.send?.({ type: 'listen-failed', message: sentence } satisfies WorkerMessage, () => process.exit(1));
    else fail(sentence);
    return;
  }
  config = listeningConfig(config, port);
  const oidc = oidcConfig
    ? await createOidcProvider({
        config: oidcConfig,
        store: oidcStore!.store,
        keystore,
        keyId: config.OIDC_KEY_ID,
        alg: config.OIDC_ALG,
        issuer: config.ISSUER,
        publicUrl: config.PUBLIC_URL,
        clock,
        sessionTtl: config.OIDC_SESSION_TTL,
        lockoutAfter: config.OIDC_LOCKOUT_AFTER,
        clockTolerance: config.CLOCK_TOLERANCE,
        xfccBy: config.TRUST_XFCC ? config.XFCC_BY : undefined,
      })
    : undefined;
  const handle = createApp({ config, keystore, logger, clock, oidc, ...(oidcStore ? { health: oidcStore.health } : {}) });
  server.off('request', early);
  server.on('request', handle);
  appReady(handle);
  drainOnSignal([server], logger, config.SHUTDOWN_GRACE * 1000, () => {
    rotation.stop();
    return Promise.all([keystore.close(), oidcStore?.close()]).then(() => pools.end());
  });
  if (cluster.isWorker) process.send?.({ type: 'listening', port } satisfies WorkerMessage);
  else logger.info({ port, host: config.HOST, publicUrl: config.PUBLIC_URL, keysDir: config.KEYS_DIR, workers: 1, oidc: oidc !== undefined }, 'listening');
}

/**
 * The cluster primary: forks WORKERS processes that share the port, logs "listening" once
 * they all listen, relays key changes between them and forwards SIGTERM.
 */
function supervise(config: FactoryConfig, logger: Logger): void {
  let listeningCount = 0;
  let announced = false;
  let stopping = false;
  const fork = () => {
    const worker = cluster.fork();
    worker.on('message', (message: WorkerMessage) => {
      if (message.type === 'listening') {
        listeningCount += 1;
        if (!announced && listeningCount === config.WORKERS) {
          announced = true;
          logger.info({ port: message.port, host: config.HOST, publicUrl: listeningConfig(config, message.port).PUBLIC_URL, keysDir: config.KEYS_DIR, workers: config.WORKERS }, 'listening');
        }
      } else if (message.type === 'listen-failed') {
        stopping = true;
        for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGKILL');
        fail(message.message);
      } else if (message.type === 'key-changed') {
        for (const other of Object.values(cluster.workers ?? {})) {
          if (other && other !== worker) other.send(message);
        }
      }
    });
  };
  for (let i = 0; i < config.WORKERS; i += 1) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        logger.info('stopped');
        process.exit(0);
      }
      return;
    }
    logger.error({ workerPid: worker.process.pid, code, signal }, 'worker exited; starting a new one');
    listeningCount -= 1;
    fork();
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining workers');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** `--help`: the usage and every setting with its default (read from the schema, so it cannot drift). */
function usage(): string {
  const defaults: Record<string, unknown> = loadFactoryConfig({});
  const width = Math.max(...FACTORY_SETTINGS.map((k) => k.length));
  return [
    'Usage: npm run jwt-factory',
    '       npm run jwt-factory -- hash-password   (reads a password on stdin, prints its scrypt hash for OIDC_CONFIG)',
    '',
    'The central JWT issuer. Settings come from the environment and an optional .env in the working',
    'directory (the environment wins); their meaning is in README.md, "jwt-factory", Settings.',
    '',
    'Settings and their defaults:',
    ...FACTORY_SETTINGS.map((key) => `  ${key.padEnd(width)}  ${defaults[key] === undefined ? '(unset)' : String(defaults[key])}`),
  ].join('\n');
}

/** `hash-password`: the first line of stdin as a `password_hash` / `client_secret_hash` value (never echoed, never logged). */
async function hashPassword(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const secret = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  if (secret === '') {
    process.stderr.write('jwt-factory: hash-password reads the password on stdin (got nothing)\n');
    process.exit(1);
  }
  process.stdout.write(`${await hashSecret(secret)}\n`);
}

/** OIDC_CONFIG, read and checked against the factory's limits; a problem is a ConfigError. */
function readOidcConfig(config: FactoryConfig): OidcConfig | undefined {
  if (config.OIDC_CONFIG === undefined) return undefined;
  const oidc = loadOidcConfig(config.OIDC_CONFIG);
  for (const [index, client] of [...oidc.clients.values()].entries()) {
    // The provider's key signs only what the provider decided: no client may issue (or be granted tokens) with it.
    if (ownedKeyIds(client).includes(config.OIDC_KEY_ID)) {
      throw new ConfigError('OIDC_CONFIG', `${config.OIDC_CONFIG}: clients[${index}].key_ids: must not name OIDC_KEY_ID (${config.OIDC_KEY_ID}), the provider's own key`);
    }
    for (const field of ['access_token_lifetime', 'id_token_lifetime'] as const) {
      // A rotated-out key is kept MAX_TOKEN_TTL + skew: a longer-lived token would outlive its key.
      if (client[field] > config.MAX_TOKEN_TTL) {
        throw new ConfigError('OIDC_CONFIG', `${config.OIDC_CONFIG}: clients[${index}].${field}: must not exceed MAX_TOKEN_TTL (${config.MAX_TOKEN_TTL})`);
      }
    }
  }
  return oidc;
}

function main(): void {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  if (args.length === 1 && args[0] === 'hash-password') {
    void hashPassword();
    return;
  }
  if (args.length > 0) {
    process.stderr.write(`jwt-factory: unknown argument "${args[0]}": settings come from the environment (npm run jwt-factory -- --help)\n`);
    process.exit(2);
  }
  let config: FactoryConfig;
  let oidcConfig: OidcConfig | undefined;
  try {
    config = loadFactoryConfig(readEnv());
    oidcConfig = readOidcConfig(config);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const logger = createLogger({ level: config.LOG_LEVEL, name: 'jwt-factory' });
  if (cluster.isPrimary && config.ISSUE_AUTH === 'open' && !isLoopbackHost(config.HOST)) {
    logger.warn({ host: config.HOST }, `ISSUE_AUTH=open on ${config.HOST}: anyone who reaches this address can mint tokens for any keyId with any sub, iss and aud, and create, rotate and dump keys`);
  }
  if (cluster.isPrimary && config.WORKERS > 1) {
    supervise(config, logger);
    return;
  }
  serve(config, logger, oidcConfig).catch((err: Error) => {
    if (err instanceof ConfigError) fail(err.message);
    logger.fatal({ err: errorFields(logger, err) }, 'start-up failed');
    process.exit(1);
  });
}

main();
