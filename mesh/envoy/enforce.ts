import { epochSeconds } from '../../lib/jwt.js';
import type { SidecarConfig } from '../translate/index.js';
import type { TraceEvent } from './events.js';
import { compileJwtAuthn, runJwtAuthn, type JwtAuthenticationConfig, type JwtAuthnFilter } from './jwt_authn.js';
import { STATUS } from './jwt_verify.js';
import { compileRbac, metadataMatcher, runRbac, type RbacFilter } from './rbac.js';
import { streamOf, type MeshRequest, type StreamState } from './request.js';

/**
 * The data plane: a translated `SidecarConfig` (Envoy's own filter configs) run on one request,
 * filter after filter as the HTTP connection manager runs them, until one answers locally or
 * the request goes upstream. `compile` parses the configs once (JWKS, matchers, regexes);
 * `enforce` runs them and records what each did as trace events (./events.ts).
 */

type Json = Record<string, unknown>;

type CompiledFilter =
  | { kind: 'jwt_authn'; filter: JwtAuthnFilter }
  | { kind: 'rbac'; filter: RbacFilter }
  | { kind: 'ext_authz'; cluster: string; enabled: ((metadata: StreamState['metadata']) => boolean) | undefined };

/** A SidecarConfig ready to run: its filters compiled, in order. */
export interface CompiledSidecar {
  config: SidecarConfig;
  filters: CompiledFilter[];
}

/** Compiles every HTTP filter of the config (once per translation). */
export function compileSidecar(config: SidecarConfig): CompiledSidecar {
  const filters = config.httpFilters.map((f): CompiledFilter => {
    if (f.name === 'envoy.filters.http.jwt_authn') return { kind: 'jwt_authn', filter: compileJwtAuthn(f.typedConfig as unknown as JwtAuthenticationConfig, config.release.has.claimToHeadersJson) };
    if (f.name === 'envoy.filters.http.rbac') return { kind: 'rbac', filter: compileRbac(f.typedConfig) };
    if (f.name === 'envoy.filters.http.ext_authz') {
      const cluster = String(((f.typedConfig.httpService as Json).serverUri as Json).cluster);
      const enabled = f.typedConfig.filterEnabledMetadata as Json | undefined;
      return { kind: 'ext_authz', cluster, enabled: enabled ? metadataMatcher(enabled) : undefined };
    }
    throw new Error(`the engine does not run the HTTP filter ${f.name}`);
  });
  return { config, filters };
}

export interface EnforceOptions {
  now: Date;
  /** What the ext_authz service behind a cluster answers (it is not called from here). */
  extAuthz: (cluster: string) => 'allow' | 'deny';
}

/** What the sidecar did with the request. */
export interface Enforcement {
  /** 200 when the request goes upstream. */
  status: 200 | 401 | 403;
  /** The body of Envoy's local reply ("" when forwarded). */
  body: string;
  /** Headers of Envoy's local reply. */
  responseHeaders: Record<string, string>;
  /** Headers the upstream receives (empty when refused). */
  upstreamHeaders: Record<string, string | string[]>;
  /** :path as it goes upstream. */
  upstreamPath: string;
  /** jwt_authn's verified payload (metadata "payload"), or undefined. */
  payload?: Record<string, unknown>;
  /** The index (in httpFilters) of the filter that answered, or undefined when forwarded. */
  decidedAt?: number;
  events: TraceEvent[];
}

const RBAC_DENIED = { status: 403 as const, body: 'RBAC: access denied', responseHeaders: { 'content-type': 'text/plain' } };

function headersOut(req: StreamState): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of req.headers) out[k] = v.length === 1 ? v[0]! : v;
  return out;
}

/** Runs the compiled filters on one request; see the module comment. */
export async function enforce(sidecar: CompiledSidecar, request: MeshRequest, options: EnforceOptions): Promise<Enforcement> {
  const events: TraceEvent[] = [];
  const emit = (e: TraceEvent) => events.push(e);
  const req = streamOf(request);
  if (req.path !== req.sentPath) emit({ kind: 'path-normalized', path: req.path.split('?')[0]! });
  let payload: Record<string, unknown> | undefined;
  const refuse = (at: number, reply: Pick<Enforcement, 'status' | 'body' | 'responseHeaders'>): Enforcement => ({ ...reply, upstreamHeaders: {}, upstreamPath: req.path, payload, decidedAt: at, events });
  for (const [at, f] of sidecar.filters.entries()) {
    if (f.kind === 'jwt_authn') {
      // filter.cc records the original URI (with its query) before any token is removed.
      const originalPath = req.path;
      emit({ kind: 'jwt-start', filter: at });
      const result = await runJwtAuthn(f.filter, req, epochSeconds(options.now), emit);
      if (result.status !== 'Ok') {
        // filter.cc onComplete + Http::Utility::buildOriginalUri (scheme://host + path, path cut at 256).
        const uri = `${req.scheme}://${req.host}${originalPath.slice(0, 256)}`;
        const realm = `Bearer realm="${uri}"${result.status === 'JwtMissed' ? '' : ', error="invalid_token"'}`;
        return refuse(at, { status: result.status === 'JwtAudienceNotAllowed' ? 403 : 401, body: STATUS[result.status], responseHeaders: { 'www-authenticate': realm, 'content-type': 'text/plain' } });
      }
      payload = result.payload;
    } else if (f.kind === 'rbac') {
      if (runRbac(f.filter, at, req, emit) === 'deny') return refuse(at, RBAC_DENIED);
    } else {
      const enabled = f.enabled ? f.enabled(req.metadata) : true;
      const allowed = !enabled || options.extAuthz(f.cluster) === 'allow';
      emit({ kind: 'ext-authz', filter: at, provider: f.cluster, enabled, allowed });
      if (!allowed) return refuse(at, { status: 403, body: '', responseHeaders: {} });
    }
  }
  return { status: 200, body: '', responseHeaders: {}, upstreamHeaders: headersOut(req), upstreamPath: req.path, payload, events };
}
