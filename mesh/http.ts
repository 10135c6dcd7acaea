import { createHash } from 'node:crypto';
import { Router } from 'express';
import { ISTIO_RANGE, releaseProblem } from './istio/releases.js';
import { z } from 'zod';
import { AppError, badRequest } from '../lib/errors.js';
import type { CompiledSidecar } from './envoy/enforce.js';
import { evaluatePrepared, prepareSidecar, type TranslationInput } from './evaluate.js';
import { PolicyError, loadPolicyObjects, parsePolicyText, type MeshPolicy } from './istio/policies.js';
import { resolveJwks, type Fetcher } from './sources.js';

/**
 * `POST /evaluate` (mounted at /mesh on the factory): JSON in — policies or YAML, one request,
 * optional JWKS, clock and workload — the engine's verdict out. Remote JWKS are fetched only
 * when the server allows it (`allowFetch`, the factory's MESH_FETCH_JWKS) and the caller opts in
 * with `fetchJwks: true`, with a timeout.
 */

export interface MeshRouterDeps {
  /** Whether `fetchJwks: true` may make this server fetch client-chosen URLs (default false). */
  allowFetch?: boolean;
  /** Replaces global fetch for jwksUri / discovery (tests, proxies). */
  fetch?: Fetcher;
  /** Upper bound of one JWKS fetch in ms (default 5000, istiod's default). */
  fetchTimeoutMs?: number;
}

const headerValues = z.record(z.string(), z.union([z.string(), z.array(z.string())]));

const bodySchema = z
  .object({
    policies: z.array(z.unknown()).optional(),
    yaml: z.string().optional(),
    request: z
      .object({
        method: z.string().min(1).default('GET'),
        path: z.string().startsWith('/', 'must start with /'),
        headers: headerValues.optional(),
        query: headerValues.optional(),
        cookies: z.record(z.string(), z.string()).optional(),
        scheme: z.enum(['http', 'https']).optional(),
        port: z.number().int().min(0).max(65535).optional(),
        sourcePrincipal: z.string().optional(),
        sourceIp: z.string().optional(),
        remoteIp: z.string().optional(),
        destinationIp: z.string().optional(),
        sni: z.string().optional(),
      })
      .strict(),
    jwks: z.record(z.string(), z.unknown()).optional(),
    now: z.string().optional(),
    workload: z.object({ namespace: z.string().min(1), labels: z.record(z.string(), z.string()).default({}) }).strict().optional(),
    rootNamespace: z.string().optional(),
    customAuthz: z.enum(['allow', 'deny']).optional(),
    fetchJwks: z.boolean().optional(),
    istioVersion: z.string().optional().refine((v) => v === undefined || releaseProblem(v) === undefined, { message: `must be a modelled Istio release, ${ISTIO_RANGE} (e.g. "1.28" or "1.29.1")` }),
  })
  .strict();

function parseBody(body: unknown): z.infer<typeof bodySchema> {
  const result = bodySchema.safeParse(body ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where = issue.path.map(String).join('.') || 'body';
    throw badRequest(`${where}: ${issue.message}`, 'invalid_request', { field: where });
  }
  return result.data;
}

function loadPolicies(body: z.infer<typeof bodySchema>): MeshPolicy[] {
  if ((body.policies === undefined) === (body.yaml === undefined)) {
    throw badRequest('send exactly one of "policies" (an array of objects) or "yaml" (text)', 'invalid_request', { field: 'policies' });
  }
  try {
    return body.yaml !== undefined ? parsePolicyText(body.yaml, 'yaml') : loadPolicyObjects(body.policies!, 'policies');
  } catch (err) {
    if (err instanceof PolicyError) throw badRequest(err.message, 'invalid_policy', { source: err.source, field: err.field });
    throw err;
  }
}

/** How many translations the router keeps, by the digest of what was translated (least recently used goes first). */
const TRANSLATIONS_KEPT = 32;

/** The mesh router: `POST /evaluate`. */
export function createMeshRouter(deps: MeshRouterDeps = {}): Router {
  const router = Router();
  // A caller that sends the same policies and JWKS again (another request, another clock) pays
  // only the enforcement, as a sidecar does between two pushes.
  const translations = new Map<string, CompiledSidecar>();
  const prepared = (input: TranslationInput): CompiledSidecar => {
    const key = createHash('sha256')
      .update(JSON.stringify([input.policies, input.jwks ?? null, input.workload ?? null, input.rootNamespace ?? null, input.istio ?? null]))
      .digest('hex');
    let sidecar = translations.get(key);
    if (sidecar) translations.delete(key);
    else sidecar = prepareSidecar(input);
    translations.set(key, sidecar);
    if (translations.size > TRANSLATIONS_KEPT) translations.delete(translations.keys().next().value!);
    return sidecar;
  };
  router.post('/evaluate', async (req, res) => {
    const body = parseBody(req.body);
    const policies = loadPolicies(body);
    const now = body.now === undefined ? new Date() : new Date(body.now);
    if (Number.isNaN(now.getTime())) throw badRequest('now: must be an ISO 8601 date-time', 'invalid_request', { field: 'now' });
    let jwks = body.jwks;
    let notes: string[] = [];
    if (body.fetchJwks) {
      if (!deps.allowFetch) {
        throw new AppError(
          'jwks_fetch_disabled',
          403,
          'fetchJwks is off on this server (MESH_FETCH_JWKS=false): send the JWKS in "jwks", or set MESH_FETCH_JWKS=true where the callers are trusted',
          { details: { field: 'fetchJwks' } },
        );
      }
      const resolved = await resolveJwks(policies, body.jwks, { fetch: deps.fetch, timeoutMs: deps.fetchTimeoutMs });
      jwks = resolved.jwks;
      notes = resolved.notes;
    }
    const sidecar = prepared({ policies, jwks, workload: body.workload, rootNamespace: body.rootNamespace, istio: body.istioVersion });
    const verdict = await evaluatePrepared(sidecar, body.request, { now, customAuthz: body.customAuthz });
    res.json({ ...verdict, steps: [...notes, ...verdict.steps] });
  });
  return router;
}
