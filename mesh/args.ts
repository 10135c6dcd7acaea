import type { Workload } from './evaluate.js';
import { ANY_RULE } from './istio/policies.js';
import { DEFAULT_ISTIO, releaseProblem } from './istio/releases.js';

/** Command-line pieces shared by `npm run mesh` and `npm run mesh-gateway`. */

/** A usage mistake: the commands print it with their help and exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `--workload app=serviceb --workload version=v1 --namespace jwt-suite` → a workload, or undefined. */
export function parseWorkload(labels: string[] | undefined, namespace: string | undefined): Workload | undefined {
  if (!labels?.length && namespace === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const pair of labels ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--workload expects label=value, got "${pair}"`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return { namespace: namespace ?? 'default', labels: out };
}

/** `--now 2026-01-01T00:00:00Z` → a Date. */
export function parseNow(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new UsageError(`--now expects an ISO 8601 date-time, got "${value}"`);
  return d;
}

/**
 * `--jwks-file f`: either one JWKS ({ keys: [...] }), used for every rule without inline jwks
 * (kept under ANY_RULE), or a map of JWKS keyed by jwksUri or issuer.
 */
export function parseJwksFile(text: string, file: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--jwks-file ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new UsageError(`--jwks-file ${file}: expected a JSON object`);
  if (Array.isArray((doc as { keys?: unknown }).keys)) return { [ANY_RULE]: doc };
  return doc as Record<string, unknown>;
}

/** `--istio 1.28` → the Istio release to model (mesh/istio/releases.ts), default the newest. */
export function parseIstio(value: string | undefined): string {
  if (value === undefined) return DEFAULT_ISTIO;
  const problem = releaseProblem(value);
  if (problem) throw new UsageError(`--istio: ${problem}`);
  return value;
}
