import { Router } from 'express';
import type { FactoryDeps } from '../deps.js';

/** Liveness (the process answers) and readiness (the key store is loaded). */
export function healthRouter(deps: FactoryDeps): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', (_req, res) => {
    const ready = deps.keystore.isLoaded();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'loading', keys: deps.keystore.size() });
  });
  return router;
}
