import { claimPath } from '../istio/policies.js';
import type { AlternativeTrace, PolicyTrace, RbacAttributes, TokenLocation, TokenRejection, TraceEvent } from '../envoy/events.js';
import type { Enforcement } from '../envoy/enforce.js';
import { STATUS } from '../envoy/jwt_verify.js';
import { selectorText } from '../istio/scope.js';
import type { AuthzOrigin, FieldRef, ProviderOrigin, RuleOrigin, SidecarConfig } from '../translate/index.js';

/**
 * Trace events → the sentences users read, in Istio's words: the names Envoy saw (origins-N,
 * RBAC policy names) are mapped back to the user's objects through the config's origins.
 * Nothing here decides: every verdict comes from the events.
 */

/** The suffix istiod gives CUSTOM rules it turned into DENY rules (builder.go getBadCustomDenyRules). */
const BAD_CUSTOM = '-deny-due-to-bad-CUSTOM-action';

/** The explanation of one enforcement. */
export interface Explanation {
  /** The rule or policy that decided, in Istio's names. */
  decidedBy: string;
  /** One plain sentence per step. */
  steps: string[];
}

/** A location in words. */
export function describeLocation(l: TokenLocation): string {
  if (l.kind === 'header') return l.prefix ? `header ${l.name} (prefix "${l.prefix}")` : `header ${l.name}`;
  return l.kind === 'param' ? `query parameter ${l.name}` : `cookie ${l.name}`;
}

const show = (v: string | undefined) => (v === undefined || v === '' ? '(none)' : `"${v}"`);

function peerText(a: RbacAttributes): string {
  return a.peer ? `"${a.peer.slice('spiffe://'.length)}"` : '(none: no mTLS peer identity)';
}

function principalText(a: RbacAttributes): string {
  const { iss, sub } = a.payload ?? {};
  if (typeof iss !== 'string' && typeof sub !== 'string') return '(none: no verified JWT)';
  return `"${iss ?? ''}/${sub ?? ''}"`;
}

function claimAt(payload: Record<string, unknown> | undefined, keys: string[]): unknown {
  let cur: unknown = payload;
  for (const k of keys) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

const SOURCE_LABELS: Record<string, string> = {
  'source.principal': 'principals (peer mTLS identity)',
  'request.auth.principal': 'requestPrincipals',
  'source.namespace': 'namespaces (from the peer identity)',
  'source.serviceAccount': 'serviceAccounts',
  'remote.ip': 'remoteIpBlocks',
  'source.ip': 'ipBlocks',
};
const OPERATION_LABELS: Record<string, string> = { ':authority': 'hosts', ':method': 'methods', 'path-matcher': 'paths', 'destination.port': 'ports' };

/** The field's name and the request's value, as the explanation shows them. */
function fieldText(f: FieldRef, a: RbacAttributes): { label: string; actual: string; prefix: string } {
  const k = f.key;
  const actual = (): string => {
    if (k === 'source.principal' || k === 'source.namespace' || k === 'source.serviceAccount') return peerText(a);
    if (k === 'request.auth.principal') return principalText(a);
    if (k === 'remote.ip') return show(a.remoteIp ?? a.sourceIp);
    if (k === 'source.ip') return show(a.sourceIp);
    if (k === ':authority') return show(a.host);
    if (k === ':method') return show(a.method);
    if (k === 'path-matcher') return show(a.path);
    if (k === 'destination.port') return a.port === undefined ? (f.from === 'when' ? '(unknown)' : '(unknown: pass the destination port)') : String(a.port);
    if (k === 'request.auth.audiences') return JSON.stringify(a.payload?.aud ?? null);
    if (k === 'request.auth.presenter') return JSON.stringify(a.payload?.azp ?? null);
    if (k.startsWith('request.auth.claims[')) return JSON.stringify(claimAt(a.payload, claimPath(k) ?? []) ?? null);
    if (k.startsWith('request.headers[')) return show(a.headers[k.slice('request.headers['.length, -1).toLowerCase()]);
    if (k === 'destination.ip') return show(a.destinationIp);
    if (k === 'connection.sni') return show(a.sni);
    return '(the metadata of another filter)';
  };
  if (f.from === 'operation') return { label: OPERATION_LABELS[k] ?? k, actual: actual(), prefix: '' };
  if (f.from === 'source') return { label: SOURCE_LABELS[k] ?? k, actual: actual(), prefix: '' };
  // A `when` on a source attribute reads as that source field.
  if (SOURCE_LABELS[k] && k !== 'request.auth.principal') return { label: SOURCE_LABELS[k]!, actual: actual(), prefix: `when ${k}: ` };
  return { label: `when ${k}`, actual: actual(), prefix: '' };
}

/** The sentence of one AND entry (values, or notValues when negated). */
function entryWhy(f: FieldRef, e: { ok: boolean; hit?: number }, a: RbacAttributes): string {
  const { label, actual, prefix } = fieldText(f, a);
  if (e.ok) return `${prefix}${label} ${actual} fits`;
  if (!f.negated) return `${prefix}${label} must be one of [${f.values.join(', ')}] but is ${actual}`;
  const hit = f.values.length === 1 ? f.values[0] : e.hit !== undefined ? f.values[e.hit] : undefined;
  return `${prefix}${label} must not match ${hit !== undefined ? `"${hit}"` : `any of [${f.values.join(', ')}]`} but is ${actual}`;
}

/** The sentences of the entries of one alternative, values and notValues of one field read as one when both pass. */
function passedWhys(alt: AlternativeTrace, refs: readonly FieldRef[], a: RbacAttributes, when: boolean): string[] {
  const out: string[] = [];
  refs.forEach((f, i) => {
    if ((f.from === 'when') !== when) return;
    const prev = refs[i - 1];
    if (prev && prev.key === f.key && prev.from === f.from && f.negated) return;
    out.push(entryWhy(f, alt.entries[i] ?? { ok: true }, a));
  });
  return out;
}

/** The first entry of an alternative that failed, with its field. */
function failureOf(alt: AlternativeTrace, refs: readonly FieldRef[]): { ref: FieldRef; entry: { ok: boolean; hit?: number } } | undefined {
  const at = alt.entries.findIndex((e) => !e.ok);
  const ref = refs[at];
  return at >= 0 && ref ? { ref, entry: alt.entries[at]! } : undefined;
}

/**
 * The sentence of one rule from its policy's trace, in the order the Istio rule reads: `from`,
 * then `to`, then `when` (istiod folds each `when` into every principal or permission).
 */
function ruleWhy(rule: RuleOrigin, trace: PolicyTrace, a: RbacAttributes): string {
  const fields = rule.fields ?? { permissions: [], principals: [] };
  const sides = [
    { alts: trace.principals, refs: fields.principals, explicit: rule.hasFrom, word: 'from' },
    { alts: trace.permissions, refs: fields.permissions, explicit: rule.hasTo, word: 'to' },
  ];
  if (trace.matched) {
    const hits = sides.map((s) => {
      const i = s.alts.findIndex((x) => x.ok);
      return { alt: s.alts[i]!, refs: s.refs[i] ?? [] };
    });
    const whys = [...hits.flatMap((h) => passedWhys(h.alt, h.refs, a, false)), ...hits.flatMap((h) => passedWhys(h.alt, h.refs, a, true))];
    return `matches — ${whys.join('; ') || 'no condition'}`;
  }
  const whenFailures: string[] = [];
  for (const s of sides) {
    const failures = s.alts.map((alt, i) => failureOf(alt, s.refs[i] ?? []));
    // An alternative whose own fields all passed (it failed, if at all, on a `when`).
    const ownOk = failures.some((f) => !f || f.ref.from === 'when');
    if (!ownOk) {
      const texts = failures.map((f) => (f ? entryWhy(f.ref, f.entry, a) : 'no condition'));
      return `does not match — ${s.explicit ? `no ${s.word} matches (${texts.join(' | ')})` : texts[0]}`;
    }
    const when = failures.find((f) => f?.ref.from === 'when');
    if (when && failures.every((f) => f)) whenFailures.push(entryWhy(when.ref, when.entry, a));
  }
  return `does not match — ${whenFailures[0] ?? 'no condition'}`;
}

/** The lines of one AuthorizationPolicy, rule by rule. */
function policyLines(o: AuthzOrigin, traces: Map<string, PolicyTrace>, a: RbacAttributes): string[] {
  if (o.rules.length === 0) return [`${o.action} ${o.policy} has no rules, so it matches nothing${o.action === 'ALLOW' ? ' (allow-nothing)' : ''}`];
  return o.rules.map((r) => {
    if (r.skipped === 'nil') return `${o.action} ${r.istioName}: empty rule skipped by istiod`;
    if (r.skipped) return `${o.action} ${r.istioName}: skipped by istiod (${r.skipped})`;
    const t = traces.get(r.envoyName);
    return t ? `${o.action} ${r.istioName}: ${ruleWhy(r, t, a)}` : `${o.action} ${r.istioName}: not in the filter`;
  });
}

function rejectionWhy(status: keyof typeof STATUS, r: TokenRejection, provider: ProviderOrigin | undefined): string {
  switch (r.check) {
    case 'parse':
      return 'the token cannot be parsed';
    case 'issuer':
      return `iss "${r.iss}" is not the issuer configured for this location (${r.allowed.join(', ')})`;
    case 'time':
      return status === 'JwtNotYetValid' ? `nbf is ${r.nbf - r.now} s in the future; Envoy allows ${r.skew} s of skew` : `exp is ${r.now - r.exp} s in the past; Envoy allows ${r.skew} s of skew`;
    case 'audience': {
      const got = r.got.length ? r.got.map((x) => `"${x}"`).join(', ') : 'none';
      return `aud ${got} matches none of [${r.configured.join(', ')}] (compared without http(s):// and a trailing slash)`;
    }
    case 'jwks':
      return `the rule's JWKS is unusable (${r.invalid})`;
    case 'signature': {
      const fake = provider?.fallback ? '; istiod could not fetch the jwksUri, so the sidecar holds its fallback JWKS (one RSA key nobody can sign for)' : '';
      const kids = r.keys.map((k) => `${k.kid ?? '(no kid)'}/${k.alg ?? '(any alg)'}`).join(', ');
      if (status === 'JwksKidAlgMismatch') return `no JWKS key matches kid "${r.kid || '(none)'}" and alg ${r.alg} (keys: ${kids})${fake}`;
      return `${r.tried === 0 ? 'no key of a type that can check' : 'no key verifies the signature of'} this ${r.alg} token (kid "${r.kid || '(none)'}"; keys: ${kids})${fake}`;
    }
  }
}

/** The time window of a valid token in words. */
function timeWhy(e: { nbf: number; exp: number; now: number; skew: number }): string {
  const expiry = !e.exp
    ? 'the token has no exp, so it never expires for Envoy'
    : e.exp >= e.now
      ? `exp is in ${e.exp - e.now} s`
      : `exp is ${e.now - e.exp} s in the past, within Envoy's ${e.skew} s of skew`;
  const notBefore = e.nbf > e.now ? `; nbf is ${e.nbf - e.now} s ahead, within the ${e.skew} s of skew` : '';
  return expiry + notBefore;
}

function removalText(l: TokenLocation): string {
  if (l.kind === 'header') return `removed header ${l.name} before forwarding (forwardOriginalToken is not set)`;
  if (l.kind === 'param') return `removed query parameter ${l.name} before forwarding (forwardOriginalToken is not set)`;
  return `left cookie ${l.name} in place: Envoy never removes a token from a cookie, even without forwardOriginalToken`;
}

/** The fixed part: which policies applied, which release is modelled, what is only logged. */
function preamble(config: SidecarConfig): string[] {
  const { scope, authz } = config.origins;
  const steps: string[] = [];
  if (scope.given === 0) {
    steps.push('no RequestAuthentication or AuthorizationPolicy was given (other kinds, such as PeerAuthentication or Deployments, are not read): with no policy the sidecar checks nothing and lets the request through');
  }
  if (scope.workload) {
    const labels = selectorText(scope.workload.labels);
    steps.push(`the workload is ${labels ? `${labels} ` : ''}in namespace ${scope.workload.namespace}; ${scope.given - scope.skipped.length} of ${scope.given} policies apply`);
  }
  if (scope.skipped.length > 0) steps.push(`not applying to this workload: ${scope.skipped.join('; ')}`);
  if (scope.selectorsIgnored) steps.push('no workload given: every policy is taken to apply, even those whose selector names another workload (give the workload to narrow them)');
  const rel = config.release;
  steps.push(`modelling Istio ${rel.version} (its sidecar runs Envoy ${rel.envoy}); pass another release to see how it differs`);
  for (const o of authz) {
    if (o.dryRun && o.action === 'CUSTOM') {
      steps.push(`CUSTOM ${o.policy} is dry-run (istio.io/dry-run), but istiod writes dry-run CUSTOM rules into the enforced DENY rules of CUSTOM's RBAC filter, so a request they match is denied`);
    } else if (o.dryRun) steps.push(`${o.action} ${o.policy} is dry-run (istio.io/dry-run): evaluated for logs only, never enforced`);
    if (o.action === 'AUDIT') steps.push(`AUDIT ${o.policy} only marks requests for logging; it never allows or denies`);
  }
  return steps;
}

/** The sentences and the deciding rule for one enforcement of `config`. */
export function explain(config: SidecarConfig, run: Enforcement): Explanation {
  const steps: string[] = [];
  const { origins, release: rel } = config;
  const providers = new Map(origins.providers.map((p) => [p.name, p]));
  const providerLabel = (name: string) => {
    const p = providers.get(name);
    return `${name} (issuer ${p?.issuer ?? '(any)'}, from ${p?.policy ?? '?'})`;
  };
  const tokenLabel = (name: string, l: TokenLocation) => `${providerLabel(name)}: token in ${describeLocation(l)}`;
  const originOf = new Map<string, { origin: AuthzOrigin; rule: RuleOrigin }>();
  for (const o of origins.authz) for (const r of o.rules) originOf.set(r.envoyName, { origin: o, rule: r });
  const hasJwt = config.httpFilters.some((f) => f.name === 'envoy.filters.http.jwt_authn');
  let jwtTold = false;
  const tellNoJwt = () => {
    if (hasJwt || jwtTold) return;
    jwtTold = true;
    steps.push('no RequestAuthentication applies: no JWT is checked and requests carry no request principal');
  };
  let decidedBy: string | undefined;
  let allowSeen = false;
  let severalTold = false;

  const [head] = run.events;
  if (head?.kind === 'path-normalized') steps.push(`the path is normalised to ${head.path} (Istio's default path normalisation)`);
  steps.push(...preamble(config));

  for (const e of run.events) {
    switch (e.kind) {
      case 'path-normalized':
        break;
      case 'jwt-start': {
        jwtTold = true;
        for (const p of origins.providers.filter((x) => x.fallback)) {
          const which = rel.has.publicOnlyJwksFallback ? 'its public-only JWKS (an RSA key whose private half was discarded, no kid)' : 'its fake JWKS (one RSA key, no kid)';
          steps.push(`${p.policy} jwtRules[${p.rule}]: no JWKS for ${p.uri}; like istiod ${rel.version} when it cannot fetch, the sidecar gets ${which}, so every token of this issuer fails verification`);
        }
        const n = origins.providers.length;
        steps.push(`jwt_authn has ${n} provider${n > 1 ? 's' : ''}: ${origins.providers.map((p) => `${p.name} = issuer ${p.issuer ?? '(any)'}`).join(', ')}; clock skew 60 s`);
        break;
      }
      case 'jwt-cors-preflight':
        steps.push('CORS preflight (OPTIONS with Origin and Access-Control-Request-Method): istiod sets bypass_cors_preflight, so jwt_authn lets it through without looking at tokens; authorization still applies');
        break;
      case 'jwt-no-token':
        steps.push(`${providerLabel(e.provider)}: no token at its locations (${e.locations.map(describeLocation).join(', ')})`);
        break;
      case 'jwt-rejected':
        steps.push(`${tokenLabel(e.provider, e.location)}: ${rejectionWhy(e.status, e.reason, providers.get(e.provider))} → "${STATUS[e.status]}"`);
        break;
      case 'jwt-valid': {
        const aud = e.audiences.length ? `aud accepted by [${e.audiences.join(', ')}]` : 'no audiences configured, so aud is not checked';
        steps.push(`${tokenLabel(e.provider, e.location)}: valid — iss "${e.iss}", ${timeWhy(e)}, ${aud}, signature checked with key ${e.keyKid ? `kid "${e.keyKid}"` : '(no kid)'} (${e.alg})`);
        break;
      }
      case 'jwt-payload-header':
        steps.push(`${tokenLabel(e.provider, e.location)}: added header ${e.header} with the base64url payload (outputPayloadToHeader)`);
        break;
      case 'jwt-claim-header':
        steps.push(
          e.value
            ? `${tokenLabel(e.provider, e.location)}: added header ${e.header}: ${e.value} from claim ${e.claim} (outputClaimToHeaders)`
            : `${tokenLabel(e.provider, e.location)}: claim ${e.claim} is missing, empty or ${e.json ? 'null' : 'not a string/number/bool'}, so header ${e.header} is not added`,
        );
        break;
      case 'jwt-token-removed':
        steps.push(`${tokenLabel(e.provider, e.location)}: ${removalText(e.location)}`);
        break;
      case 'jwt-inner-and':
        steps.push('no single provider accepted every token it found; now each provider must accept its tokens or find none (the inner AND)');
        break;
      case 'jwt-done':
        if (e.status !== 'Ok') {
          steps.push(`jwt_authn refuses the request: ${e.status === 'JwtAudienceNotAllowed' ? '403' : '401'} "${STATUS[e.status]}"`);
          decidedBy = `RequestAuthentication ${[...new Set(origins.providers.map((p) => p.policy))].join(', ')} (jwt_authn: ${STATUS[e.status]})`;
        } else if (e.payload) {
          steps.push(`jwt_authn accepts the request; request principal "${String(e.payload.iss ?? '')}/${String(e.payload.sub ?? '')}"`);
        } else {
          steps.push('jwt_authn lets the request through: it carries no token at any configured location (RequestAuthentication alone never demands one)');
        }
        break;
      case 'ext-authz': {
        if (!e.enabled) break;
        const provider = origins.customProviders[0] ?? e.provider;
        if (e.allowed) {
          steps.push(`the external authorizer "${provider}" is asked; it cannot be called from here and is assumed to allow (pass customAuthz: deny to see its refusal)`);
        } else {
          steps.push(`the external authorizer "${provider}" is asked and refuses (customAuthz: deny): 403`);
          const id = run.events.find((x): x is Extract<TraceEvent, { kind: 'rbac' }> => x.kind === 'rbac' && x.shadow && x.effective !== undefined);
          decidedBy = `CUSTOM ${originOf.get(id?.effective ?? '')?.rule.istioName ?? '?'} (provider ${provider})`;
        }
        break;
      }
      case 'rbac': {
        const traces = new Map(e.policies.map((t) => [t.name, t]));
        const mine = origins.authz.filter((o) => o.rules.some((r) => traces.has(r.envoyName)));
        const typed = config.httpFilters[e.filter]?.typedConfig ?? {};
        const custom = typed.shadowRulesStatPrefix === 'istio_ext_authz_' || e.policies.some((t) => t.name.endsWith(BAD_CUSTOM));
        const effective = e.effective ? originOf.get(e.effective) : undefined;
        // The origins this engine holds, up to the one that decided (the order the user wrote them).
        const told = (list: AuthzOrigin[]) => {
          for (const o of list) {
            steps.push(...policyLines(o, traces, e.attributes));
            if (effective && effective.origin === o) return;
          }
        };
        if (custom && e.shadow) {
          told(origins.authz.filter((o) => o.action === 'CUSTOM' && !o.dryRun));
          break;
        }
        if (custom && !e.policies.some((t) => t.name.endsWith(BAD_CUSTOM))) {
          // builder.go buildHTTP: dry-run CUSTOM rules go into the filter's enforced rules (action DENY).
          told(origins.authz.filter((o) => o.action === 'CUSTOM' && o.dryRun));
          if (effective) {
            steps.push(`the dry-run CUSTOM rule ${effective.rule.istioName} matches, and the RBAC filter enforces it: 403 "RBAC: access denied"`);
            decidedBy = `CUSTOM ${effective.rule.istioName} (dry-run, enforced as DENY)`;
          }
          break;
        }
        if (custom) {
          if (!severalTold) {
            severalTold = true;
            const names = origins.customProviders;
            steps.push(`CUSTOM policies name ${names.length} providers (${names.join(', ')}); istiod allows one per workload, so their rules become DENY rules and no provider is asked`);
          }
          told(mine);
          if (effective) {
            steps.push(`the CUSTOM rule ${effective.rule.istioName} now denies: 403 "RBAC: access denied"`);
            decidedBy = `CUSTOM ${effective.rule.istioName} (several providers: deny)`;
          }
          break;
        }
        if (e.shadow || e.action === 'LOG') break;
        tellNoJwt();
        const list = origins.authz.filter((o) => o.action === e.action && !o.dryRun);
        told(list);
        if (e.action === 'DENY' && effective) {
          steps.push(`DENY policy ${effective.rule.istioName} matches: 403 "RBAC: access denied"`);
          decidedBy = `AuthorizationPolicy DENY ${effective.rule.istioName}`;
        }
        if (e.action === 'ALLOW') {
          allowSeen = true;
          if (effective) {
            steps.push(`ALLOW policy ${effective.rule.istioName} matches: the request goes to the upstream`);
            decidedBy = `AuthorizationPolicy ALLOW ${effective.rule.istioName}`;
          } else {
            steps.push(`${list.length} ALLOW polic${list.length > 1 ? 'ies apply' : 'y applies'} and none matches: 403 "RBAC: access denied"`);
            decidedBy = `AuthorizationPolicy: no ALLOW rule matches (${list.map((o) => o.policy).join(', ')})`;
          }
        }
        break;
      }
    }
  }
  if (run.status === 200) {
    tellNoJwt();
    if (!allowSeen) {
      steps.push('no ALLOW policy applies to the workload, so every request that no DENY matched is allowed');
      decidedBy = hasJwt ? 'no AuthorizationPolicy denies it (RequestAuthentication passed)' : 'no policy refuses it';
    }
  }
  return { decidedBy: decidedBy ?? 'the sidecar', steps };
}
