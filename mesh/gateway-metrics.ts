import { Counter, Gauge } from 'prom-client';
import { createRegistry } from '../lib/metrics.js';
import type { Verdict } from './evaluate.js';
import type { LoginEvent } from './login/handler.js';
import type { MeshPolicy } from './istio/policies.js';

/**
 * `mesh-gateway`'s Prometheus metrics, one registry per gateway. Every label value comes from a
 * fixed set or from the policies loaded at the time (their `namespace/name`), never from the
 * request, so a caller cannot create series.
 */

/** The label of a decision that no single policy made: no policy applied, or ALLOW policies applied and none matched. */
export const NO_POLICY = 'none';

/**
 * The `namespace/name` of the policy that decided, read from the verdict's `decidedBy` against
 * the loaded policies only: the policy whose rule matched, in Envoy's RBAC name
 * (`ns[<ns>]-policy[<name>]-rule[<i>]`, ALLOW, DENY or CUSTOM), else the RequestAuthentication whose
 * jwt_authn refused (`RequestAuthentication <ns>/<name> (…)`), else NO_POLICY.
 */
export function decidingPolicy(decidedBy: string, policies: readonly MeshPolicy[], defaultNamespace: string): string {
  const names = policies.map((p) => ({ kind: p.kind, namespace: p.namespace ?? defaultNamespace, name: p.name }));
  for (const p of names) if (decidedBy.includes(`ns[${p.namespace}]-policy[${p.name}]-rule[`)) return `${p.namespace}/${p.name}`;
  if (decidedBy.startsWith('RequestAuthentication ')) {
    // The names follow the kind, comma-separated, up to the parenthesis: the first one loaded is the label.
    const listed = decidedBy.slice('RequestAuthentication '.length).split(' (')[0]!.split(', ');
    const found = listed.find((n) => names.some((p) => p.kind === 'RequestAuthentication' && `${p.namespace}/${p.name}` === n));
    if (found) return found;
  }
  return NO_POLICY;
}

export interface GatewayMetricsOptions {
  /** The policies loaded now (a getter: a reload swaps them). */
  policies: () => readonly MeshPolicy[];
  /** The namespace of a policy that names none (the workload's, as in the engine). */
  defaultNamespace: string;
  /** Counts the login's events from the start (zeros included) when the login mode is on. */
  login: boolean;
  processMetrics?: boolean;
}

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;

/** Creates the gateway's registry and the recorders the gateway and the login call. */
export function createGatewayMetrics(options: GatewayMetricsOptions) {
  const registry = createRegistry({ processMetrics: options.processMetrics });
  const decisions = new Counter({
    name: 'mesh_gateway_decisions_total',
    help: 'Requests the Istio rules decided, by status (200 forwarded, 401, 403) and deciding policy (namespace/name of a loaded policy, or none)',
    labelNames: ['status', 'policy'],
    registers: [registry],
  });
  const loginEvents = new Counter({
    name: 'mesh_gateway_login_events_total',
    help: 'The login mode: logins (started, ok, refused by the provider, failed), token refreshes (ok, refused: the session ended, unavailable: the provider unreachable) and logouts',
    labelNames: ['event', 'outcome'],
    registers: [registry],
  });
  const loginRefusals = new Counter({
    name: 'mesh_gateway_login_refusals_total',
    help: "Requests the login answered itself with an error, by code (login_required, session_expired, csrf_refused, issuer_unavailable, login_state_missing)",
    labelNames: ['code'],
    registers: [registry],
  });
  const reloads = new Counter({ name: 'mesh_gateway_reloads_total', help: 'Policy reloads after an edit, by outcome (ok, or failed: the previous rules stay)', labelNames: ['outcome'], registers: [registry] });
  new Gauge({
    name: 'mesh_gateway_policies_loaded',
    help: 'RequestAuthentication and AuthorizationPolicy objects enforced now',
    registers: [registry],
    collect() {
      this.set(options.policies().length);
    },
  });
  if (options.login) {
    const zeros: Array<Exclude<LoginEvent, { event: 'refused' }>> = [
      { event: 'login', outcome: 'started' },
      { event: 'login', outcome: 'ok' },
      { event: 'login', outcome: 'refused' },
      { event: 'login', outcome: 'failed' },
      { event: 'refresh', outcome: 'ok' },
      { event: 'refresh', outcome: 'refused' },
      { event: 'refresh', outcome: 'unavailable' },
      { event: 'logout', outcome: 'ok' },
      { event: 'logout', outcome: 'no_session' },
    ];
    for (const labels of zeros) loginEvents.inc(labels, 0);
  }
  for (const outcome of ['ok', 'failed']) reloads.inc({ outcome }, 0);

  // The label of a decidedBy text is the same while the same rules are loaded: computed once per text.
  let labelsFor: { policies: readonly MeshPolicy[]; byText: Map<string, string> } | undefined;
  const policyLabel = (decidedBy: string): string => {
    const policies = options.policies();
    if (labelsFor?.policies !== policies) labelsFor = { policies, byText: new Map() };
    let label = labelsFor.byText.get(decidedBy);
    if (label === undefined) {
      label = decidingPolicy(decidedBy, policies, options.defaultNamespace);
      // decidedBy texts are built from policy names and fixed sentences: bounded by the rules, but capped all the same.
      if (labelsFor.byText.size < 10_000) labelsFor.byText.set(decidedBy, label);
    }
    return label;
  };

  return {
    registry,
    /** Records one decision of the rules. */
    decided(verdict: Pick<Verdict, 'status' | 'decidedBy'>): void {
      decisions.inc({ status: String(verdict.status), policy: policyLabel(verdict.decidedBy) });
    },
    /** Records one event of the login mode. */
    login(event: LoginEvent): void {
      if (event.event === 'refused') loginRefusals.inc({ code: event.outcome });
      else loginEvents.inc({ event: event.event, outcome: event.outcome });
    },
    /** Records one reload of the policies. */
    reloaded(outcome: 'ok' | 'failed'): void {
      reloads.inc({ outcome });
    },
  };
}
