import { compileRbac, runRbac } from '../../mesh/envoy/rbac.js';
import { streamOf, type MeshRequest } from '../../mesh/envoy/request.js';
import type { AuthorizationPolicy, RuleSpec } from '../../mesh/istio/policies.js';
import { translate } from '../../mesh/translate/index.js';

/**
 * The ALLOW RBAC filter istiod writes for one rule of a policy in `namespace`, compiled as the
 * sidecar runs it (regexes included): the returned function says whether the rule lets a
 * request through. Compiled once, so a timing measures one request's matching.
 */
export function compiledRule(rule: RuleSpec, namespace: string): (req: MeshRequest) => { ok: boolean } {
  const policy: AuthorizationPolicy = { kind: 'AuthorizationPolicy', name: 'p', namespace, source: 'test', matchLabels: undefined, hasTargetRef: false, action: 'ALLOW', provider: undefined, rules: [rule], dryRun: false };
  const config = translate({ policies: [policy], defaultNamespace: namespace }).httpFilters.find((f) => f.name === 'envoy.filters.http.rbac')!;
  const filter = compileRbac(config.typedConfig);
  return (req) => ({ ok: runRbac(filter, 0, streamOf(req), () => undefined) === 'continue' });
}
