import { Router } from 'express';
import type { FactoryDeps } from '../deps.js';

/** Liveness (the process answers) and readiness (the key store is loaded, and its database and the OIDC store's, if any, reachable). */
export function healthRouter(deps: FactoryDeps): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', (_req, res) => {
    const keys = deps.keystore.health();
    const others = deps.health?.() ?? { ready: true, missing: [] };
    const ready = keys.ready && others.ready;
    const missing = [...keys.missing, ...others.missing];
    const status = ready ? 'ready' : deps.keystore.isLoaded() ? 'degraded' : 'loading';
    res.status(ready ? 200 : 503).json({ status, keys: deps.keystore.size(), ...(missing.length > 0 ? { missing } : {}) });
  });
  return router;
}
