import { toHeaderMap, type HeaderMap } from './headers.js';

/**
 * One request as the sidecar's HTTP connection manager holds it while its filters run: the
 * headers as the codec stored them, the normalised :path, the cookies, the connection's
 * attributes and the dynamic metadata filters leave for the ones after them.
 */

/** What the sidecar knows of the connection a request came on (AuthorizationPolicy `source` and `to`). */
export interface ConnectionAttributes {
  /** Destination port of the workload the request reached (`ports`, `destination.port`). */
  port?: number;
  /** The peer's mTLS identity, e.g. cluster.local/ns/jwt-suite/sa/servicea (`principals`, `namespaces`; needs mTLS). */
  sourcePrincipal?: string;
  sourceIp?: string;
  remoteIp?: string;
  destinationIp?: string;
  sni?: string;
}

/** One request as a client sends it. */
export interface MeshRequest extends ConnectionAttributes {
  method: string;
  /** Path, optionally with a query string. */
  path: string;
  headers?: Record<string, string | string[]>;
  /** Extra query parameters, appended to the path's own. */
  query?: Record<string, string | string[]>;
  /** Extra cookies, added to those of the cookie header. */
  cookies?: Record<string, string>;
  /** Scheme the sidecar saw (x-forwarded-proto), used in the 401 realm. Default http. */
  scheme?: string;
}

/** The request while the filters run (jwt_authn edits headers and path; RBAC reads them). */
export interface StreamState {
  method: string;
  /** :authority (or host). */
  host: string;
  scheme: string;
  headers: HeaderMap;
  /** :path with its query string, normalised. */
  path: string;
  /** The path as the client sent it, query included (before normalisation). */
  sentPath: string;
  cookies: Map<string, string>;
  connection: ConnectionAttributes;
  /** Dynamic metadata by filter name (jwt_authn's payload, RBAC's shadow policy id). */
  metadata: Map<string, Record<string, unknown>>;
}

/** Http::Utility::parseCookies: name=value pairs of every cookie header, first occurrence wins, quotes dropped. */
function parseCookies(headers: HeaderMap, extra: Record<string, string> | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const line of headers.get('cookie') ?? []) {
    for (const pair of line.split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0) continue;
      const name = pair.slice(0, eq).trim();
      let value = pair.slice(eq + 1).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      if (name && !cookies.has(name)) cookies.set(name, value);
    }
  }
  for (const [k, v] of Object.entries(extra ?? {})) if (!cookies.has(k)) cookies.set(k, v);
  return cookies;
}

/** RFC 3986 dot-segment removal: Envoy's normalize_path, on by default in Istio (pathNormalization BASE). */
export function normalizePath(full: string): string {
  const q = full.indexOf('?');
  const path = q >= 0 ? full.slice(0, q) : full;
  const out: string[] = [];
  const segments = path.split('/');
  segments.forEach((seg, i) => {
    if (seg === '.') {
      if (i === segments.length - 1) out.push('');
    } else if (seg === '..') {
      if (out.length > 1) out.pop();
      if (i === segments.length - 1) out.push('');
    } else out.push(seg);
  });
  let normalized = out.join('/');
  if (!normalized.startsWith('/')) normalized = `/${normalized}`;
  return normalized + (q >= 0 ? full.slice(q) : '');
}

function withQuery(path: string, query: Record<string, string | string[]> | undefined): string {
  const entries = Object.entries(query ?? {}).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => [k, x] as [string, string]));
  if (entries.length === 0) return path;
  const extra = new URLSearchParams(entries).toString();
  return path + (path.includes('?') ? '&' : '?') + extra;
}

/** The request as the connection manager hands it to the first filter. */
export function streamOf(req: MeshRequest): StreamState {
  const headers = toHeaderMap(req.headers);
  const sentPath = withQuery(req.path, req.query);
  return {
    method: req.method.toUpperCase(),
    host: headers.get(':authority')?.[0] ?? headers.get('host')?.[0] ?? '',
    scheme: req.scheme ?? 'http',
    headers,
    path: normalizePath(sentPath),
    sentPath,
    cookies: parseCookies(headers, req.cookies),
    connection: { port: req.port, sourcePrincipal: req.sourcePrincipal, sourceIp: req.sourceIp, remoteIp: req.remoteIp, destinationIp: req.destinationIp, sni: req.sni },
    metadata: new Map(),
  };
}

/** The path without its query string. */
export function pathOnly(path: string): string {
  const q = path.indexOf('?');
  return q >= 0 ? path.slice(0, q) : path;
}
