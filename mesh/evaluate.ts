import type { MeshPolicy } from './istio/policies.js';
import { compileSidecar, enforce, type CompiledSidecar } from './envoy/enforce.js';
import type { MeshRequest } from './envoy/request.js';
import { explain } from './explain/index.js';
import type { WorkloadRef } from './istio/scope.js';
import { translateWorkload } from './translate/index.js';

/**
 * evaluate(): what the workload's sidecar does with one request under the given
 * RequestAuthentication and AuthorizationPolicy objects, as the real system does it in two
 * stages: istiod translates the objects into the sidecar's filter configs (mesh/translate),
 * Envoy runs them on the request (mesh/envoy); mesh/explain says why. Pure and HTTP-free:
 * JWKS arrive as data.
 */

export type { ConnectionAttributes, MeshRequest } from './envoy/request.js';
export { whyNotInScope } from './istio/scope.js';

/** The workload a request reaches. */
export type Workload = WorkloadRef;

/** What istiod is given for the workload: the policies, the JWKS it fetched, the release. */
export interface TranslationInput {
  policies: readonly MeshPolicy[];
  /** JWKS documents (objects or JSON text) keyed by jwksUri or by issuer, for rules without inline `jwks`. */
  jwks?: Record<string, unknown>;
  /** The workload the request reaches; without it every policy is taken to apply. */
  workload?: Workload;
  /** Istio's root namespace (meshConfig.rootNamespace), default istio-system. */
  rootNamespace?: string;
  /** The Istio release modelled ("1.28", "1.29.1"), default the newest (mesh/istio/releases.ts). */
  istio?: string;
}

export interface EvaluateInput extends TranslationInput {
  request: MeshRequest;
  now: Date;
  /** What the CUSTOM (ext_authz) provider answers; it cannot be called from here. Default allow. */
  customAuthz?: 'allow' | 'deny';
}

export interface Verdict {
  /** 200 when the sidecar forwards the request. */
  status: 200 | 401 | 403;
  /** The body Envoy answers with ("" when forwarded). */
  body: string;
  /** Headers of Envoy's own answer (www-authenticate on a jwt_authn refusal, content-type). */
  responseHeaders: Record<string, string>;
  /** `<iss>/<sub>` of the verified token, or null. */
  principal: string | null;
  /** The verified payload the mesh keeps as metadata, or null. */
  claims: Record<string, unknown> | null;
  /** Headers the upstream receives (token removed unless forwardOriginalToken, outputs added). */
  upstreamHeaders: Record<string, string | string[]>;
  /** The path the upstream receives (a token in a query parameter is removed). */
  upstreamPath: string;
  /** The rule or policy that decided, in Istio's names. */
  decidedBy: string;
  /** The explanation, one plain sentence per step. */
  steps: string[];
  /** The Istio release the verdict models. */
  istio: string;
}

/** istiod's half, ready to run: translated once, compiled once (JWKS parsed, matchers built). */
export function prepareSidecar(input: TranslationInput): CompiledSidecar {
  return compileSidecar(translateWorkload(input));
}

/** `<iss>/<sub>` of a verified payload, or null. */
function principalOf(payload: Record<string, unknown> | undefined): string | null {
  return payload && (typeof payload.iss === 'string' || typeof payload.sub === 'string') ? `${payload.iss ?? ''}/${payload.sub ?? ''}` : null;
}

/** Runs one request through a prepared sidecar: Envoy's answer, explained. */
export async function evaluatePrepared(sidecar: CompiledSidecar, request: MeshRequest, options: { now: Date; customAuthz?: 'allow' | 'deny' }): Promise<Verdict> {
  const run = await enforce(sidecar, request, { now: options.now, extAuthz: () => options.customAuthz ?? 'allow' });
  const { decidedBy, steps } = explain(sidecar.config, run);
  return {
    status: run.status,
    body: run.body,
    responseHeaders: run.responseHeaders,
    principal: principalOf(run.payload),
    claims: run.payload ?? null,
    upstreamHeaders: run.upstreamHeaders,
    upstreamPath: run.upstreamPath,
    decidedBy,
    steps,
    istio: sidecar.config.release.version,
  };
}

/** Evaluates one request as the workload's sidecar would: enforce(translate(...), request), explained. */
export async function evaluate(input: EvaluateInput): Promise<Verdict> {
  return evaluatePrepared(prepareSidecar(input), input.request, input);
}
