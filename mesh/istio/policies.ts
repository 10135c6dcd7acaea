import { parseAllDocuments } from 'yaml';
import { z } from 'zod';

/**
 * Loads Istio RequestAuthentication and AuthorizationPolicy objects from YAML or JSON text, as
 * users write them for `kubectl apply`, and validates them the way the API server (CRD schema,
 * `preserveUnknownFields: false`) and istiod's validation webhook would, with errors that name
 * the file and the field. Other kinds (PeerAuthentication, Kustomization, Deployments...) are
 * skipped. Pure: text in, typed objects out.
 */

/** A policy file or object that cannot be used, with the file and field that are wrong. */
export class PolicyError extends Error {
  readonly source: string;
  readonly field: string;
  constructor(source: string, field: string, message: string) {
    super(`${source}: ${field ? `${field}: ` : ''}${message}`);
    this.name = 'PolicyError';
    this.source = source;
    this.field = field;
  }
}

const strList = z.array(z.string()).optional();

// istio/api security/v1beta1/request_authentication.proto, message JWTRule.
const jwtRuleSchema = z
  .object({
    issuer: z.string().optional(),
    audiences: strList,
    jwksUri: z.string().optional(),
    jwks: z.string().optional(),
    fromHeaders: z.array(z.object({ name: z.string().min(1, 'must not be empty'), prefix: z.string().optional() }).strict()).optional(),
    fromParams: strList,
    fromCookies: strList,
    outputPayloadToHeader: z.string().optional(),
    forwardOriginalToken: z.boolean().optional(),
    outputClaimToHeaders: z.array(z.object({ header: z.string().min(1), claim: z.string().min(1) }).strict()).optional(),
    spaceDelimitedClaims: strList,
    timeout: z.string().optional(),
  })
  .strict();

const selectorSchema = z.object({ matchLabels: z.record(z.string(), z.string()).optional() }).strict().optional();
const targetRefSchema = z.object({ group: z.string().optional(), kind: z.string(), name: z.string(), namespace: z.string().optional() }).strict();

const requestAuthenticationSpec = z
  .object({
    selector: selectorSchema,
    targetRef: targetRefSchema.optional(),
    targetRefs: z.array(targetRefSchema).optional(),
    jwtRules: z.array(jwtRuleSchema).optional(),
  })
  .strict();

// istio/api security/v1beta1/authorization_policy.proto, messages Source, Operation, Condition, Rule.
const sourceSchema = z
  .object({
    principals: strList,
    notPrincipals: strList,
    requestPrincipals: strList,
    notRequestPrincipals: strList,
    namespaces: strList,
    notNamespaces: strList,
    serviceAccounts: strList,
    notServiceAccounts: strList,
    ipBlocks: strList,
    notIpBlocks: strList,
    remoteIpBlocks: strList,
    notRemoteIpBlocks: strList,
  })
  .strict();

const operationSchema = z
  .object({
    hosts: strList,
    notHosts: strList,
    ports: strList,
    notPorts: strList,
    methods: strList,
    notMethods: strList,
    paths: strList,
    notPaths: strList,
  })
  .strict();

const conditionSchema = z.object({ key: z.string().min(1, 'must not be empty'), values: strList, notValues: strList }).strict();

const ruleSchema = z
  .object({
    from: z.array(z.object({ source: sourceSchema.optional() }).strict()).optional(),
    to: z.array(z.object({ operation: operationSchema.optional() }).strict()).optional(),
    when: z.array(conditionSchema).optional(),
  })
  .strict()
  .nullable();

const authorizationPolicySpec = z
  .object({
    selector: selectorSchema,
    targetRef: targetRefSchema.optional(),
    targetRefs: z.array(targetRefSchema).optional(),
    rules: z.array(ruleSchema).optional(),
    action: z.enum(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']).optional(),
    provider: z.object({ name: z.string() }).strict().optional(),
  })
  .strict();

const metadataSchema = z
  .object({
    name: z.string().min(1, 'must not be empty'),
    namespace: z.string().optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    labels: z.record(z.string(), z.string()).optional(),
  })
  .passthrough();

export type JwtRuleSpec = z.infer<typeof jwtRuleSchema>;
/** The spec of a RequestAuthentication, as the CRD schema reads it. */
export type RequestAuthenticationSpec = z.infer<typeof requestAuthenticationSpec>;
/** The spec of an AuthorizationPolicy, as the CRD schema reads it. */
export type AuthorizationPolicySpec = z.infer<typeof authorizationPolicySpec>;
/** The metadata of an object, as read. */
export type ObjectMetadata = z.infer<typeof metadataSchema>;

/** The key of a supplied JWKS that serves every rule no other key names (a bare `--jwks-file`). */
export const ANY_RULE = '*';

/**
 * The JWKS supplied for a rule without inline `jwks`: the map's entry for its `jwksUri`, else
 * for its `issuer`, else the ANY_RULE entry. The engine and the fetcher both ask this, so a
 * supplied document is never replaced by a fetched one.
 */
export function suppliedJwks(rule: JwtRuleSpec, supplied: Readonly<Record<string, unknown>> | undefined): unknown {
  if (!supplied) return undefined;
  for (const key of [rule.jwksUri, rule.issuer, ANY_RULE]) {
    if (key !== undefined && supplied[key] !== undefined) return supplied[key];
  }
  return undefined;
}
export type SourceSpec = z.infer<typeof sourceSchema>;
export type OperationSpec = z.infer<typeof operationSchema>;
export type ConditionSpec = z.infer<typeof conditionSchema>;
export interface RuleSpec {
  from?: { source?: SourceSpec }[];
  to?: { operation?: OperationSpec }[];
  when?: ConditionSpec[];
}

/** The parts every policy shares: where it came from and which workloads it selects. */
interface PolicyBase {
  name: string;
  /** undefined means "the namespace kubectl would apply it to" (the workload's). */
  namespace: string | undefined;
  /** The file (or "request body") the object came from, for messages. */
  source: string;
  matchLabels: Record<string, string> | undefined;
  /** targetRef(s) attach a policy to a Gateway/Service (waypoint), never to a sidecar. */
  hasTargetRef: boolean;
}

export interface RequestAuthentication extends PolicyBase {
  kind: 'RequestAuthentication';
  jwtRules: JwtRuleSpec[];
}

export interface AuthorizationPolicy extends PolicyBase {
  kind: 'AuthorizationPolicy';
  action: 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';
  provider: string | undefined;
  /** null entries are kept: istiod skips a nil rule (builder.go "skipped nil rule"). */
  rules: (RuleSpec | null)[];
  /** The `istio.io/dry-run` annotation: evaluated, never enforced. */
  dryRun: boolean;
}

export type MeshPolicy = RequestAuthentication | AuthorizationPolicy;

/** Keys accepted in `when` (istio/istio pilot/pkg/security/authz/model/model.go, New()). */
const WHEN_KEYS = [
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
  'source.ip',
  'remote.ip',
  'source.namespace',
  'source.principal',
  'source.serviceAccount',
  'destination.ip',
  'destination.port',
  'connection.sni',
];
const WHEN_PREFIXES = ['request.headers[', 'request.auth.claims[', 'experimental.envoy.filters.'];

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`;
  return out;
}

function parseWith<T>(schema: z.ZodType<T>, value: unknown, source: string, prefix: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const base = [prefix, formatPath(issue.path)].filter(Boolean).join('.');
  if (issue.code === 'unrecognized_keys') {
    const keys = (issue as { keys: string[] }).keys;
    throw new PolicyError(source, base, `unknown field${keys.length > 1 ? 's' : ''} ${keys.map((k) => `"${k}"`).join(', ')}`);
  }
  throw new PolicyError(source, base, issue.message);
}

/** Claim names in `request.auth.claims[a][b]` (model/util.go extractNameInNestedBrackets). */
export function claimPath(key: string): string[] | undefined {
  const rest = key.slice('request.auth.claims'.length);
  if (!rest.startsWith('[') || !rest.endsWith(']')) return undefined;
  const inner = rest.slice(1, -1);
  // Nested form: [a][b] — split on "][" only when the whole key is a chain of brackets.
  const parts = inner.split('][');
  return parts.every((p) => p.length > 0 && !p.includes('[') && !p.includes(']')) ? parts : [inner];
}

function validateCondition(c: ConditionSpec, source: string, field: string): void {
  const known = WHEN_KEYS.includes(c.key) || WHEN_PREFIXES.some((p) => c.key.startsWith(p));
  if (!known) throw new PolicyError(source, `${field}.key`, `unknown attribute "${c.key}" (see https://istio.io/latest/docs/reference/config/security/conditions/)`);
  if (c.key.startsWith('request.headers[') && !c.key.endsWith(']')) {
    throw new PolicyError(source, `${field}.key`, `expecting format request.headers[<NAME>], found "${c.key}"`);
  }
  if (c.key.startsWith('request.auth.claims[') && !claimPath(c.key)) {
    throw new PolicyError(source, `${field}.key`, `expecting format request.auth.claims[<NAME>], found "${c.key}"`);
  }
  if (!c.values?.length && !c.notValues?.length) {
    throw new PolicyError(source, field, 'at least one of values or notValues must be set');
  }
  if (c.key === 'destination.port') {
    for (const v of [...(c.values ?? []), ...(c.notValues ?? [])]) assertPort(v, source, field);
  }
}

function assertPort(v: string, source: string, field: string): void {
  if (!/^\d+$/.test(v) || Number(v) > 65535) throw new PolicyError(source, field, `invalid port "${v}"`);
}

function validateRules(rules: (RuleSpec | null)[], source: string, prefix: string): void {
  rules.forEach((rule, i) => {
    if (!rule) return;
    const at = `${prefix}.rules[${i}]`;
    rule.from?.forEach((f, j) => {
      // Validation webhook: "From.Source must not be empty" (pkg/config/validation).
      if (!f.source || Object.values(f.source).every((v) => !v || v.length === 0)) {
        throw new PolicyError(source, `${at}.from[${j}].source`, 'must not be empty');
      }
    });
    rule.to?.forEach((t, j) => {
      if (!t.operation || Object.values(t.operation).every((v) => !v || v.length === 0)) {
        throw new PolicyError(source, `${at}.to[${j}].operation`, 'must not be empty');
      }
      for (const p of [...(t.operation.ports ?? []), ...(t.operation.notPorts ?? [])]) assertPort(p, source, `${at}.to[${j}].operation.ports`);
    });
    rule.when?.forEach((c, j) => validateCondition(c, source, `${at}.when[${j}]`));
  });
}

function toPolicy(doc: Record<string, unknown>, source: string): MeshPolicy | undefined {
  const kind = doc.kind;
  if (kind !== 'RequestAuthentication' && kind !== 'AuthorizationPolicy') return undefined;
  const apiVersion = String(doc.apiVersion ?? '');
  if (!apiVersion.startsWith('security.istio.io/')) {
    throw new PolicyError(source, 'apiVersion', `${kind} must use apiVersion security.istio.io/v1 or v1beta1, got "${apiVersion}"`);
  }
  const metadata = parseWith(metadataSchema, doc.metadata ?? {}, source, 'metadata');
  const where = `${source} (${kind} ${metadata.name})`;
  const base = (spec: { selector?: { matchLabels?: Record<string, string> }; targetRef?: unknown; targetRefs?: unknown[] }) => {
    const hasTargetRef = spec.targetRef !== undefined || (spec.targetRefs?.length ?? 0) > 0;
    if (hasTargetRef && spec.selector) throw new PolicyError(where, 'spec', 'only one of selector or targetRefs can be set');
    return { name: metadata.name, namespace: metadata.namespace, source, matchLabels: spec.selector?.matchLabels, hasTargetRef };
  };
  if (kind === 'RequestAuthentication') {
    const spec = parseWith(requestAuthenticationSpec, doc.spec ?? {}, where, 'spec');
    const jwtRules = spec.jwtRules ?? [];
    jwtRules.forEach((r, i) => {
      if (!r.issuer && !r.jwksUri) throw new PolicyError(where, `spec.jwtRules[${i}].issuer`, 'issuer must be set');
      if (r.jwksUri) {
        try {
          new URL(r.jwksUri);
        } catch {
          throw new PolicyError(where, `spec.jwtRules[${i}].jwksUri`, `"${r.jwksUri}" is not an absolute URL`);
        }
      }
    });
    return { kind, ...base(spec), jwtRules };
  }
  const spec = parseWith(authorizationPolicySpec, doc.spec ?? {}, where, 'spec');
  const action = spec.action ?? 'ALLOW';
  if (action === 'CUSTOM' && !spec.provider?.name) throw new PolicyError(where, 'spec.provider', 'must be set for action CUSTOM');
  if (action !== 'CUSTOM' && spec.provider) throw new PolicyError(where, 'spec.provider', `must not be set for action ${action}`);
  const rules = (spec.rules ?? []) as (RuleSpec | null)[];
  validateRules(rules, where, 'spec');
  const dryRun = metadata.annotations?.['istio.io/dry-run'] === 'true';
  return { kind, ...base(spec), action, provider: spec.provider?.name, rules, dryRun };
}

/** Validates already-parsed objects (JSON bodies, YAML documents); non-policy kinds are skipped. */
export function loadPolicyObjects(objects: unknown[], source: string): MeshPolicy[] {
  const out: MeshPolicy[] = [];
  objects.forEach((obj, i) => {
    if (obj === null || obj === undefined) return;
    const where = objects.length > 1 ? `${source}#${i + 1}` : source;
    if (typeof obj !== 'object' || Array.isArray(obj)) throw new PolicyError(where, '', 'expected a Kubernetes object');
    const doc = obj as Record<string, unknown>;
    // A `kind: List` (kubectl get -o yaml) carries its objects in items.
    if (doc.kind === 'List' && Array.isArray(doc.items)) {
      out.push(...loadPolicyObjects(doc.items, where));
      return;
    }
    const policy = toPolicy(doc, where);
    if (policy) out.push(policy);
  });
  return out;
}

/**
 * The most alias expansions one document may make: yaml's own default, named here because an
 * alias bomb ("billion laughs", CVE-2019-11253 in Kubernetes' YAML parser) grows exponentially.
 */
const MAX_ALIAS_COUNT = 100;

/** Parses YAML (several `---` documents) or JSON text and validates the policies in it. */
export function parsePolicyText(text: string, source: string): MeshPolicy[] {
  const docs = parseAllDocuments(text);
  const objects: unknown[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      const err = doc.errors[0]!;
      const line = err.linePos?.[0]?.line;
      throw new PolicyError(line ? `${source}:${line}` : source, '', `not valid YAML: ${err.message.split('\n')[0]}`);
    }
    let js: unknown;
    try {
      js = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (err) {
      // yaml's toJS throws a ReferenceError for an alias without its anchor and for excessive aliasing.
      throw new PolicyError(source, '', `not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    }
    // A JSON (or YAML) array of objects is accepted like several documents.
    if (Array.isArray(js)) objects.push(...js);
    else objects.push(js);
  }
  return loadPolicyObjects(objects, source);
}
