import type { IncomingMessage, ServerResponse } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';

/**
 * What every server of the suite shares for Prometheus: one registry per app (no module-level
 * state, so two apps in one test never share a counter) with the usual process metrics, and
 * the `GET /metrics` answer for servers that are not express apps.
 */

/** A fresh registry with prom-client's process metrics (CPU, memory, event loop lag, handles) unless turned off. */
export function createRegistry(options: { processMetrics?: boolean; labels?: Record<string, string> } = {}): Registry {
  const registry = new Registry();
  if (options.labels) registry.setDefaultLabels(options.labels);
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  return registry;
}

/** A node:http listener that answers `GET /metrics` (and HEAD) with the registry's text exposition; 404/405 JSON otherwise. */
export function metricsListener(registry: Registry): (req: IncomingMessage, res: ServerResponse) => void {
  const json = (res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}) => {
    const body = JSON.stringify({ error: { code, message } });
    res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  return (req, res) => {
    req.resume();
    if ((req.url ?? '/').split('?')[0] !== '/metrics') return json(res, 404, 'route_not_found', 'This listener serves GET /metrics only');
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, 'method_not_allowed', '/metrics answers GET only', { allow: 'GET, HEAD' });
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      () => json(res, 500, 'internal_error', 'The metrics could not be collected'),
    );
  };
}
