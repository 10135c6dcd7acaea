import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { readIfExistsSync } from '../lib/files.js';
import { createLogger } from '../lib/logger.js';
import { listen, describeListenError, drainOnSignal } from '../lib/server.js';
import { createHttpClient } from '../lib/httpclient.js';
import { certificatePaths, loadServerTls } from '../lib/certs.js';
import { assertServiceName, loadServiceConfig } from './config.js';
import { createSelfKeyStore, type SelfKeyStore } from './selfkeys.js';
import { createPeerKeys } from './peerkeys.js';
import { createApp } from './app.js';

/**
 * `tsx app/main.ts <servicea|serviceb|servicec>`: settings from `app/.<service>.env` with the
 * process environment winning, then keys, TLS and clients, then HTTP (and HTTPS when
 * HTTPS_PORT is set). Logs `{"msg":"listening","port":N,"httpsPort":M|null}` once both listen.
 */

const APP_DIR = path.dirname(fileURLToPath(import.meta.url));

/**
 * The service's .env file as an object (dotenv's parse: process.env is not touched). Next to
 * this file under tsx; `app/` of the working directory when built, as tsc does not copy
 * dotfiles into dist/.
 */
function readEnvFile(service: string): Record<string, string> {
  for (const dir of [APP_DIR, path.resolve('app')]) {
    const text = readIfExistsSync(path.join(dir, `.${service}.env`));
    if (text !== undefined) return parseDotenv(text);
  }
  return {};
}

function readCa(certsDir: string): string {
  const { caPath } = certificatePaths(certsDir, 'ca');
  try {
    return readFileSync(caPath, 'utf8');
  } catch {
    throw new Error(`${caPath} is missing: run npm run certs (or set CERTS_DIR)`);
  }
}

const USAGE = `Usage: npm run servicea | npm run serviceb | npm run servicec

Runs one of the suite's services (tsx app/main.ts <service>). Settings come from
app/.<service>.env, overridden by the environment; every setting and its meaning is in
README.md, "The services' settings". servicea calls the others; serviceb and servicec verify.`;

async function main(): Promise<void> {
  const args = process.argv.slice(3);
  if (process.argv[2] === '--help' || process.argv[2] === '-h' || args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (args.length > 0) {
    process.stderr.write(`${process.argv[2]}: unknown argument "${args[0]}": settings come from app/.${process.argv[2]}.env and the environment (--help)\n`);
    process.exit(2);
  }
  const serviceName = assertServiceName(process.argv[2]);
  const config = loadServiceConfig(serviceName, { ...readEnvFile(serviceName), ...process.env });
  const logger = createLogger({ level: config.logLevel, name: serviceName });

  const client = createHttpClient({ ca: readCa(config.certsDir), timeoutMs: config.upstreamTimeoutMs });
  const now = () => new Date();
  let selfKeys: SelfKeyStore | undefined;
  if (serviceName === 'servicea') {
    selfKeys = createSelfKeyStore(config.serviceKeysDir);
    const key = await selfKeys.load();
    logger.info({ kid: key?.kid ?? null, dir: config.serviceKeysDir }, key ? 'self-signing key loaded' : 'no self-signing key yet (POST /gen-keys)');
  }
  const peerKeys = createPeerKeys({ source: config.peerKeysSource, jwksBaseUrl: config.urls.servicea, dir: config.peerKeysDir, client, now });
  const app = createApp({ config, logger, client, selfKeys, peerKeys, now });

  const servers: http.Server[] = [http.createServer(app)];
  if (config.httpsPort !== undefined) {
    const tls = await loadServerTls(config.certsDir, serviceName);
    servers.push(https.createServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, app));
  }

  const wanted = [config.port, config.httpsPort];
  const bound: number[] = [];
  for (const [i, server] of servers.entries()) {
    try {
      bound.push(await listen(server, wanted[i]!, config.host, config.limits));
    } catch (err) {
      logger.fatal({ port: wanted[i] }, describeListenError(err as NodeJS.ErrnoException, wanted[i]!, config.host));
      process.exit(1);
    }
  }
  drainOnSignal(servers, logger, 10_000, () => client.close());
  logger.info({ port: bound[0], httpsPort: bound[1] ?? null, host: config.host }, 'listening');
}

main().catch((err: Error) => {
  // Start-up failures (bad setting, missing certificate) end in one readable sentence.
  process.stderr.write(`${process.argv[2] ?? 'app'}: ${err.message}\n`);
  process.exit(1);
});
