import http from 'node:http';
import { z } from 'zod';
import { parseEnv, setting } from '../lib/config.js';
import { createHttpClient } from '../lib/httpclient.js';
import { createLogger } from '../lib/logger.js';
import { describeListenError, drainOnSignal, listen } from '../lib/server.js';
import { createWebui } from './app.js';

/** `npm run webui`: the webui page and its API routes, to run behind `mesh-gateway --login-issuer`. */

const schema = z.object({
  // 3003: the next port after the services' 3000-3002.
  PORT: setting.port(3003),
  // Loopback: without the gateway in front, nothing should reach it.
  HOST: z.string().default('127.0.0.1'),
  SERVICEB_URL: setting.url('http://localhost:3001') as z.ZodDefault<z.ZodString>,
  SERVICEC_URL: setting.url('http://localhost:3002') as z.ZodDefault<z.ZodString>,
  UPSTREAM_TIMEOUT_MS: setting.integer(3000, 50, 120_000),
  LOG_LEVEL: setting.logLevel(),
});

const USAGE = `Usage: npm run webui

The webui page behind mesh-gateway's login. Settings (environment): ${Object.keys(schema.shape).join(', ')}
(README.md, "Log in at the gateway (BFF)").
`;

async function main(): Promise<void> {
  if (process.argv.includes('--help')) {
    process.stdout.write(USAGE);
    return;
  }
  const config = parseEnv(schema, process.env);
  const logger = createLogger({ level: config.LOG_LEVEL, name: 'webui' });
  const client = createHttpClient({ timeoutMs: config.UPSTREAM_TIMEOUT_MS });
  const server = http.createServer(createWebui({ backends: { serviceb: config.SERVICEB_URL, servicec: config.SERVICEC_URL }, client, logger }));
  try {
    const port = await listen(server, config.PORT, config.HOST);
    logger.info({ port }, 'listening');
  } catch (err) {
    logger.error({ err: { message: describeListenError(err as NodeJS.ErrnoException, config.PORT, config.HOST) } }, 'cannot listen');
    process.exit(1);
  }
  drainOnSignal([server], logger, 10_000, () => client.close());
}

main().catch((err: unknown) => {
  process.stderr.write(`webui: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
