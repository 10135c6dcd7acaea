import cluster from 'node:cluster';
import { createServer } from 'node:http';
import express from 'express';
import { z } from 'zod';
import { parseEnv, setting } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { listen } from '../../lib/server.js';

/**
 * The HTTP ceiling: the most a trivial express 5 JSON route answers on this machine, in the
 * same kind of process as the factory (tsx, express 5, the same JSON body parser and limit,
 * the same WORKERS), so that "issuance at 70% of the HTTP ceiling" compares like with like.
 * It parses the JSON body it is sent and answers a small JSON object; nothing else.
 */
const config = parseEnv(
  z.object({
    PORT: setting.port(0),
    HOST: z.string().default('127.0.0.1'),
    WORKERS: setting.integer(1, 1, 64),
  }),
  process.env,
);
const logger = createLogger({ level: 'info', name: 'http-ceiling' });

if (config.WORKERS > 1 && cluster.isPrimary) {
  // Workers share the primary's listening socket; the primary reports the port once all listen.
  let listening = 0;
  for (let i = 0; i < config.WORKERS; i += 1) cluster.fork();
  cluster.on('message', (_worker, message: { port?: number }) => {
    listening += 1;
    if (listening === config.WORKERS) logger.info({ port: message.port, workers: config.WORKERS }, 'listening');
  });
  const stop = () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: '100kb' }));
  app.post('/ceiling', (req, res) => {
    res.json({ ok: true, fields: Object.keys((req.body ?? {}) as object).length });
  });
  app.get('/ceiling', (_req, res) => {
    res.json({ ok: true });
  });
  const server = createServer(app);
  // With one worker per core, every worker binds the same port (cluster shares the handle).
  const port = await listen(server, config.PORT, config.HOST);
  if (cluster.isWorker) process.send?.({ port });
  else logger.info({ port }, 'listening');
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
