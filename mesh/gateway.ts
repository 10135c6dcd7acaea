import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import { errorFields, type Logger } from '../lib/logger.js';
import { evaluatePrepared, prepareSidecar, type Verdict, type Workload } from './evaluate.js';
import type { CompiledSidecar } from './envoy/enforce.js';
import type { LoginHook } from './login/handler.js';
import type { MeshPolicy } from './istio/policies.js';

/**
 * A local reverse proxy that enforces RequestAuthentication and AuthorizationPolicy objects the
 * way the workload's sidecar would: refused requests get Envoy's answer (status, body,
 * www-authenticate); allowed ones go to the upstream with the headers Envoy computes (token
 * removed unless forwardOriginalToken, outputPayloadToHeader / outputClaimToHeaders added).
 */

/** What the gateway enforces; swapped as a whole on reload (each object is translated once). */
export interface GatewayRules {
  policies: MeshPolicy[];
  jwks: Record<string, unknown>;
  /** The policies already translated for this gateway's workload and release (else translated on first use). */
  sidecar?: CompiledSidecar;
}

export interface GatewayDeps {
  /** Current rules (a getter, so a reload swaps them without restarting). */
  rules: () => GatewayRules;
  upstream: URL;
  /** Extra CA certificates (PEM) trusted for an https upstream; system CAs stay trusted. */
  ca?: string | Buffer;
  workload?: Workload;
  rootNamespace?: string;
  /** The mTLS identity the sidecar would have verified for every caller (the gateway has no mTLS). */
  sourcePrincipal?: string;
  /**
   * The port the workload listens on in the cluster (AuthorizationPolicy `ports`,
   * `destination.port`); default the upstream's port, which is the same when nothing is remapped.
   */
  destinationPort?: number;
  /** A fixed clock (to replay a decision); default: the real time of each request. */
  now?: () => Date;
  /** The Istio release to model (mesh/istio/releases.ts); default the newest. */
  istio?: string;
  logger: Logger;
  /** The login at the gateway (token handler): runs before the rules, answers its own routes, supplies the user's token. */
  login?: LoginHook;
  /** Told of every decision of the rules (the gateway's metrics). */
  onDecision?: (verdict: Verdict) => void;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) never travel past a proxy. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-authenticate', 'proxy-authorization']);

/** Envoy's answer when the upstream cannot be reached. */
const UPSTREAM_FAILURE = 'upstream connect error or disconnect/reset before headers. reset reason: connection failure';

function requestHeaders(req: IncomingMessage): Record<string, string[]> {
  // headersDistinct keeps every value, including repeated Authorization headers Node would drop.
  const out: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(req.headersDistinct)) if (v) out[k] = v;
  return out;
}

/** Builds the gateway's HTTP server (not listening: the caller listens). */
export function createGateway(deps: GatewayDeps): http.Server {
  const client = deps.upstream.protocol === 'https:' ? https : http;
  const upstreamPort = Number(deps.upstream.port || (deps.upstream.protocol === 'https:' ? 443 : 80));
  const destinationPort = deps.destinationPort ?? upstreamPort;
  const basePath = deps.upstream.pathname.replace(/\/$/, '');
  // Node's `ca` replaces the trusted roots; keep the system ones and add the given CA.
  const ca = deps.ca ? [...rootCertificates, deps.ca.toString()] : undefined;
  // istiod translates once per push, not per request: one translation per rules object (a reload swaps it).
  const translated = new WeakMap<GatewayRules, CompiledSidecar>();
  const sidecarFor = (rules: GatewayRules): CompiledSidecar => {
    let sidecar = rules.sidecar ?? translated.get(rules);
    if (!sidecar) {
      sidecar = prepareSidecar({ policies: rules.policies, jwks: rules.jwks, workload: deps.workload, rootNamespace: deps.rootNamespace, istio: deps.istio });
      translated.set(rules, sidecar);
    }
    return sidecar;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    let incoming = requestHeaders(req);
    if (deps.login) {
      const forwarded = await deps.login.handle(req, res, incoming);
      if (!forwarded) return;
      incoming = forwarded;
    }
    const verdict = await evaluatePrepared(
      sidecarFor(deps.rules()),
      {
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        headers: incoming,
        // The sidecar's destination port is the port the application listens on in the pod.
        port: destinationPort,
        sourcePrincipal: deps.sourcePrincipal,
        sourceIp: req.socket.remoteAddress,
      },
      { now: deps.now?.() ?? new Date() },
    );
    deps.onDecision?.(verdict);
    const log = { method: req.method, path: (req.url ?? '/').split('?')[0], status: verdict.status, decidedBy: verdict.decidedBy };
    if (verdict.status !== 200) {
      deps.logger.info(log, 'refused');
      req.resume();
      res.writeHead(verdict.status, { ...verdict.responseHeaders, 'content-length': Buffer.byteLength(verdict.body) });
      res.end(verdict.body);
      return;
    }
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(verdict.upstreamHeaders)) if (!HOP_BY_HOP.has(k)) headers[k] = v;
    const upstreamReq = client.request(
      {
        protocol: deps.upstream.protocol,
        hostname: deps.upstream.hostname,
        port: upstreamPort,
        method: req.method,
        path: basePath + verdict.upstreamPath,
        headers,
        // SNI carries host names only (RFC 6066 §3); the certificate is checked against the IP otherwise.
        ...(deps.upstream.protocol === 'https:' ? { ca, ...(isIP(deps.upstream.hostname) ? {} : { servername: deps.upstream.hostname }) } : {}),
      },
      (upstreamRes) => {
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(upstreamRes.headersDistinct)) if (v && !HOP_BY_HOP.has(k)) out[k] = v.length === 1 ? v[0]! : v;
        deps.logger.info({ ...log, status: upstreamRes.statusCode }, 'forwarded');
        res.writeHead(upstreamRes.statusCode ?? 502, out);
        upstreamRes.pipe(res);
      },
    );
    upstreamReq.on('error', (err) => {
      deps.logger.warn({ ...log, err: errorFields(deps.logger, err) }, 'upstream failed');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.writeHead(503, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(UPSTREAM_FAILURE) });
      res.end(UPSTREAM_FAILURE);
    });
    req.pipe(upstreamReq);
  };

  return http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      deps.logger.error({ err: errorFields(deps.logger, err), path: (req.url ?? '/').split('?')[0] }, 'gateway error');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error');
    });
  });
}
