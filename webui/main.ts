import http from 'node:http';
import { createHttpClient } from '../lib/httpclient.js';
import { createLogger } from '../lib/logger.js';
import { describeListenError, drainOnSignal, listen } from '../lib/server.js';
import { createWebui } from './app.js';
import { WEBUI_SETTINGS, loadWebuiConfig } from './config.js';

/** `npm run webui`: the webui page and its API routes, to run behind `mesh-gateway --login-issuer`. */

const USAGE = `Usage: npm run webui

The webui page behind mesh-gateway's login. Settings (environment): ${Object.keys(WEBUI_SETTINGS.shape).join(', ')}
(README.md, "Log in at the gateway (BFF)").
`;

async function main(): Promise<void> {
  if (process.argv.includes('--help')) {
    process.stdout.write(USAGE);
    return;
  }
  const config = loadWebuiConfig(process.env);
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
