import express, { type Express, type Router } from 'express';
import { badRequest } from '../lib/errors.js';
import { createMeshRouter } from '../mesh/http.js';
import { errorMiddleware, jsonBodyParser, notFoundHandler, requestLogger } from '../lib/http.js';
import { accessRouter } from './access.js';
import type { FactoryDeps } from './deps.js';
import { createJwksCache } from './jwks.js';
import { createFactoryMetrics } from './metrics.js';
import { consoleAssets, consoleRouter } from './routes/console.js';
import { discoveryRouter } from './routes/discovery.js';
import { oidcRouter } from './oidc/routes.js';
import { healthRouter } from './routes/health.js';
import { keysRouter, rotationDefaults } from './routes/keys.js';
import { tokensRouter } from './routes/tokens.js';

export type { FactoryDeps } from './deps.js';

/** A path segment that is `.` or `..`, plain or percent-encoded (`%2e`, `%2E%2e`, ...). */
const DOT_SEGMENT = /(?:^|\/)(?:\.|%2e){1,2}(?:\/|$)/i;

/**
 * The factory's routers after the token routes, in mounting order. Another feature mounts its
 * own router next to these in createApp (e.g. `app.use('/mesh', ...)`), never inside them.
 */
export function factoryRouters(deps: FactoryDeps): Router[] {
  const jwks = createJwksCache(deps.keystore, deps.clock, rotationDefaults(deps));
  return [healthRouter(deps), discoveryRouter(deps, jwks), keysRouter(deps, jwks)];
}

/** Builds the factory's express app (only main listens). */
export function createApp(given: FactoryDeps): Express {
  const metrics = given.metrics ?? createFactoryMetrics({ keystore: given.keystore, clock: given.clock, rotation: rotationDefaults(given), keyLabels: given.config.METRICS_KEY_LABELS });
  const deps: FactoryDeps = { ...given, metrics, keystore: metrics.instrument(given.keystore) };
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);

  app.use(requestLogger(deps.logger));
  // A keyId names a file: refuse dot segments before any route sees them (curl normally folds them).
  app.use((req, _res, next) => {
    if (DOT_SEGMENT.test(req.path)) {
      throw badRequest('Path segments "." and ".." are not allowed', 'invalid_path');
    }
    next();
  });
  app.use(jsonBodyParser(deps.config.BODY_LIMIT));

  const access = accessRouter(deps);
  if (access) app.use(access);
  // Issuance and verification, the calls a mesh makes on every request, on the app itself and
  // before every router: no other path overlaps theirs, and each router in front of them would
  // be one more walk over its routes for each of those calls (the access guard stays in front).
  tokensRouter(deps, app);
  for (const router of factoryRouters(deps)) app.use(router);
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  if (deps.oidc) {
    app.use(oidcRouter(deps.oidc, { bodyLimit: deps.config.BODY_LIMIT, secureCookies: deps.config.PUBLIC_URL.startsWith('https:'), sessionTtl: deps.config.OIDC_SESSION_TTL }));
  }
  app.use('/mesh', createMeshRouter({ allowFetch: deps.config.MESH_FETCH_JWKS, fetchTimeoutMs: deps.config.MESH_FETCH_TIMEOUT_MS }));
  app.use('/console', consoleRouter(consoleAssets()));

  app.use(notFoundHandler);
  app.use(errorMiddleware(deps.logger));
  return app;
}
