import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type Express, type Request } from 'express';
import { decodeJwt } from 'jose';
import { AppError } from '../lib/errors.js';
import { errorMiddleware, notFoundHandler, requestLogger } from '../lib/http.js';
import type { HttpClient } from '../lib/httpclient.js';
import type { Logger } from '../lib/logger.js';

/**
 * The webui of the seeds: a static page and three API routes, behind `mesh-gateway`'s login.
 * It implements no login: the gateway sends each request with the user's access token in
 * Authorization, and the routes pass it on to serviceb and servicec, whose mesh rules demand
 * the webui's identity AND the user's (requestPrincipals). No answer carries a token.
 */

export interface WebuiDeps {
  /** The backends the page calls, by name: `serviceb` → http://serviceb:3001. */
  backends: Record<string, string>;
  client: HttpClient;
  logger: Logger;
}

/** The page's files: next to this module under tsx; `webui/public` of the working directory when built (tsc copies no .html). */
const PUBLIC = [path.join(path.dirname(fileURLToPath(import.meta.url)), 'public'), path.resolve('webui', 'public')].find((d) => existsSync(d)) ?? 'webui/public';

/** The claims the page may show; a token's signature was checked by the mesh, the page only displays them. */
const SHOWN = ['iss', 'sub', 'scope', 'client_id', 'exp'] as const;

function bearer(req: Request): string {
  const match = /^Bearer[ ]+([^ ]+)[ ]*$/i.exec(req.get('authorization') ?? '');
  if (!match) throw new AppError('token_missing', 401, 'No user token came with the request: the webui runs behind the gateway\'s login');
  return match[1]!;
}

/** Builds the webui's express app; only main listens. */
export function createWebui(deps: WebuiDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(requestLogger(deps.logger));
  app.use((_req, res, next) => {
    // Scripts and styles from this origin only, none inline: an injected script has nothing to run.
    res.set('content-security-policy', "default-src 'self'; frame-ancestors 'none'");
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/api/me', (req, res) => {
    let claims: Record<string, unknown>;
    try {
      claims = decodeJwt(bearer(req));
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw new AppError('token_unreadable', 401, 'The user token is not a JWT');
    }
    const me: Record<string, unknown> = {};
    for (const k of SHOWN) if (claims[k] !== undefined) me[k] = claims[k];
    // Claims of the id token, when the gateway forwards them (--login-claim-header name=x-user-name).
    for (const k of ['name', 'email']) if (req.get(`x-user-${k}`)) me[k] = decodeURIComponent(req.get(`x-user-${k}`)!);
    res.json(me);
  });

  app.get('/api/:backend', async (req, res) => {
    const name = req.params.backend;
    const base = Object.hasOwn(deps.backends, name) ? deps.backends[name] : undefined;
    if (base === undefined) throw new AppError('route_not_found', 404, `No backend named ${name}`);
    const answer = await deps.client.request({ dependency: name, method: 'GET', url: `${base.replace(/\/$/, '')}/hello`, headers: { authorization: `Bearer ${bearer(req)}` } });
    let body: unknown = answer.text;
    try {
      body = JSON.parse(answer.text);
    } catch {
      /* text as it came */
    }
    res.status(answer.status >= 200 && answer.status < 300 ? 200 : 502).json({ backend: name, status: answer.status, answer: body });
  });

  app.use(express.static(PUBLIC, { index: 'index.html', maxAge: 0 }));
  app.use(notFoundHandler);
  app.use(errorMiddleware(deps.logger));
  return app;
}
