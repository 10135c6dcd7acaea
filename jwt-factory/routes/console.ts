import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Router, type Response } from 'express';
import type { ConsoleAsset } from '../../console/build.js';

/**
 * The browser console at /console: three static files (page, script, stylesheet) with a strict
 * CSP (no inline script or style, nothing from another origin) and ETag revalidation. From a
 * build (dist/), the bundle npm run build wrote beside the compiled factory; from the sources, a
 * bundle esbuild makes in memory on the first request.
 */

/**
 * Only our own origin: the console fetches the factory's own endpoints, works offline, and loads no
 * CDN or font. frame-ancestors: no one frames it (clickjacking); form-action: the login's POST.
 */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** Where npm run build puts the console relative to this module once compiled: dist/console. */
const BUILT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'console');

/** The console's files: a prebuilt folder when there is one, else a bundle built now (once per process). */
export function consoleAssets(dir = BUILT_DIR): () => Promise<Map<string, ConsoleAsset>> {
  let pending: Promise<Map<string, ConsoleAsset>> | undefined;
  return () => {
    pending ??= (async () => {
      const { readBuiltConsole, buildConsole } = await import('../../console/build.js');
      return (await readBuiltConsole(dir)) ?? buildConsole();
    })();
    // A failed build is retried on the next request rather than cached.
    pending.catch(() => (pending = undefined));
    return pending;
  };
}

function send(res: Response, file: ConsoleAsset, ifNoneMatch: string | undefined): void {
  res.set({
    'Content-Security-Policy': CSP,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    // Revalidate every time: a 304 costs nothing, and an upgraded factory never serves a stale script.
    'Cache-Control': 'no-cache',
    ETag: file.etag,
  });
  if (ifNoneMatch?.split(',').some((t) => t.trim().replace(/^W\//, '') === file.etag)) {
    res.status(304).end();
    return;
  }
  res.type(file.type).send(file.body);
}

/** GET /console (the page), /console/app.js, /console/style.css. */
export function consoleRouter(assets: () => Promise<Map<string, ConsoleAsset>>): Router {
  const router = Router({ strict: true });
  router.get('/', async (req, res) => {
    // The page's relative URLs (app.js, style.css) need the trailing slash.
    if (!req.originalUrl.split('?')[0]!.endsWith('/')) {
      res.redirect(301, `${req.baseUrl}/${req.originalUrl.includes('?') ? `?${req.originalUrl.split('?')[1]}` : ''}`);
      return;
    }
    send(res, (await assets()).get('index.html')!, req.get('if-none-match'));
  });
  router.get('/:file', async (req, res, next) => {
    const file = req.params.file === 'index.html' ? undefined : (await assets()).get(req.params.file);
    if (!file) {
      next();
      return;
    }
    send(res, file, req.get('if-none-match'));
  });
  return router;
}
