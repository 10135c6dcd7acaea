import type { MeshPolicy } from './policies.js';

/** The workload a request reaches: its namespace and labels. */
export interface WorkloadRef {
  namespace: string;
  labels: Record<string, string>;
}

/** `k=v,k2=v2` for the explanation. */
export function selectorText(labels: Record<string, string> | undefined): string {
  return labels ? Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',') : '';
}

/**
 * Which policies reach the workload (istio/istio pilot/pkg/model/authorization.go and
 * authentication.go): those of its namespace and of the root namespace, whose selector labels
 * are all on the workload; a policy without selector covers every workload in its scope.
 * Returns why a policy does not apply, or undefined when it does.
 */
export function whyNotInScope(p: MeshPolicy, input: { workload?: WorkloadRef; rootNamespace?: string }): string | undefined {
  const root = input.rootNamespace ?? 'istio-system';
  // targetRef(s) bind a policy to a Gateway/Service (waypoint or gateway), never to a sidecar.
  if (p.hasTargetRef) return 'uses targetRefs (gateway/waypoint only)';
  const w = input.workload;
  if (!w) return undefined;
  const ns = p.namespace ?? w.namespace;
  if (ns !== w.namespace && ns !== root) return `is in namespace ${ns}`;
  const missing = Object.entries(p.matchLabels ?? {}).filter(([k, v]) => w.labels[k] !== v);
  if (missing.length > 0) return `selects ${selectorText(p.matchLabels)}`;
  return undefined;
}

