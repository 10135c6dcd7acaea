import { pickPublicMembers } from '../../lib/jwk.js';
import { DNS_LABEL } from '../../lib/k8s.js';
import { KEY_ID_PATTERN } from '../../lib/keyid.js';
import { DEFAULT_ISSUER, DEFAULT_NAMESPACE } from '../../lib/suite.js';
import type { IstioObject } from './crd.js';

/**
 * The generator behind `npm run mesh-rules`, beside the schemas that read its output back
 * (mesh/istio/policies.ts): Istio RequestAuthentication + AuthorizationPolicy objects
 * that let one caller (a factory keyId, which is also its `sub` and its service account) reach
 * one or more workloads with a factory token. No I/O here: the command fetches or reads the JWKS.
 */

export { DEFAULT_ISSUER, DEFAULT_NAMESPACE } from '../../lib/suite.js';
/** Istio's default trust domain: peer principals read cluster.local/ns/<ns>/sa/<service account>. */
export const TRUST_DOMAIN = 'cluster.local';

/** A public JWK as the factory publishes it. */
export type PublicJwk = Record<string, string>;

export interface MeshRulesOptions {
  /** The factory keyId that signs the caller's tokens; also the tokens' `sub` and the caller's service account. */
  key: string;
  /** Accepted `aud` values. Without `workload`, each audience is also a workload: one rule pair each. */
  audiences: string[];
  issuer?: string;
  namespace?: string;
  /** One receiving workload (pods labelled app=<workload>) that accepts any of the audiences. */
  workload?: string;
  /** The factory's base URL as the mesh reaches it (default: its cluster DNS name in `namespace`). */
  factoryUrl?: string;
  /** Only this container port (the HTTP one: Istio cannot read a token inside the app's own TLS). */
  port?: number;
  /** Public keys to inline as `jwks` instead of `jwksUri`: no fetch by istiod or Envoy. */
  jwks?: { keys: PublicJwk[] };
  /** The factory's OpenID Connect key (OIDC_KEY_ID): its user tokens verify too, in the same rule (one jwtRule per issuer). */
  userKey?: string;
  /** With userKey: the `aud` of the user tokens accepted besides `audiences` (an id token's is its client). */
  userAudiences?: string[];
}

/** A usage error: the sentence names the flag and what is wrong with it. */
export class MeshRulesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MeshRulesError';
  }
}

const METADATA_MEMBERS = ['kid', 'alg', 'use'] as const;

/** Istio's request principal for a token: `<iss>/<sub>` (Envoy jwt_authn, Istio RequestAuthentication docs). */
export const requestPrincipal = (issuer: string, subject: string) => `${issuer}/${subject}`;

/** The mTLS peer principal of a service account. */
export const peerPrincipal = (namespace: string, serviceAccount: string) => `${TRUST_DOMAIN}/ns/${namespace}/sa/${serviceAccount}`;

/** The JWKS of one factory key: what a rule that trusts one caller fetches. */
export const keyJwksUrl = (factoryUrl: string, key: string) => `${factoryUrl}/keys/${key}/jwks.json`;

/** The factory's cluster address in a namespace. */
export const factoryClusterUrl = (namespace: string) => `http://jwt-factory.${namespace}.svc.cluster.local:5555`;

/**
 * Keeps only the allow-listed public members of each key. Refuses symmetric keys (a JWKS must
 * never carry a secret), unknown key types, and a set left with no key.
 */
export function publicJwks(input: unknown): { keys: PublicJwk[] } {
  const keys = (input as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new MeshRulesError('the JWKS has no "keys" array');
  const out = keys.map((raw, i) => {
    const jwk = raw as Record<string, unknown>;
    if (jwk.kty === 'oct') throw new MeshRulesError(`key ${i} is symmetric (kty "oct"): a secret never goes into a mesh rule`);
    const result = pickPublicMembers(jwk);
    if ('problem' in result) {
      const { problem } = result;
      throw new MeshRulesError(problem.kind === 'missing' ? `key ${i} misses its public member "${problem.member}"` : `key ${i} has an unsupported kty "${problem.kty}"`);
    }
    const picked: PublicJwk = { ...result.members };
    for (const m of METADATA_MEMBERS) if (typeof jwk[m] === 'string') picked[m] = jwk[m] as string;
    // Envoy picks the key by kid; a key without one matches any token, which we never publish.
    if (!picked.kid) throw new MeshRulesError(`key ${i} has no kid`);
    return picked;
  });
  if (out.length === 0) throw new MeshRulesError('the JWKS holds no key');
  return { keys: out };
}

/** Refuses options Kubernetes or Istio would refuse, naming the flag; fills in the defaults. */
export function validateOptions(options: MeshRulesOptions): Required<Pick<MeshRulesOptions, 'issuer' | 'namespace' | 'factoryUrl'>> {
  if (!KEY_ID_PATTERN.test(options.key)) throw new MeshRulesError(`--key "${options.key}" is not a keyId (1 to 64 of A-Z a-z 0-9 . _ -, not starting with .)`);
  // The caller's service account is named after the key, so the key must also be a valid name there.
  if (!DNS_LABEL.test(options.key)) throw new MeshRulesError(`--key "${options.key}" must also be a Kubernetes service account name (lower case, digits, "-")`);
  if (options.audiences.length === 0) throw new MeshRulesError('at least one --audience is required');
  for (const aud of options.audiences) {
    if (aud.trim() === '') throw new MeshRulesError('--audience must not be empty');
    if (options.workload === undefined && !DNS_LABEL.test(aud)) {
      throw new MeshRulesError(`--audience "${aud}" also names the receiving workload, so it must be a Kubernetes name (or pass --workload)`);
    }
  }
  if (options.workload !== undefined && !DNS_LABEL.test(options.workload)) throw new MeshRulesError(`--workload "${options.workload}" is not a Kubernetes name`);
  const namespace = options.namespace ?? DEFAULT_NAMESPACE;
  if (!DNS_LABEL.test(namespace)) throw new MeshRulesError(`--namespace "${namespace}" is not a Kubernetes namespace name`);
  const issuer = options.issuer ?? DEFAULT_ISSUER;
  if (issuer.trim() === '' || /\s/.test(issuer)) throw new MeshRulesError('--issuer must be a non-empty string without spaces');
  const factoryUrl = (options.factoryUrl ?? factoryClusterUrl(namespace)).replace(/\/+$/, '');
  let parsed: URL;
  try {
    parsed = new URL(factoryUrl);
  } catch {
    throw new MeshRulesError(`--factory-url "${factoryUrl}" is not an absolute URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new MeshRulesError('--factory-url must be http:// or https://');
  if (options.port !== undefined && (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535)) {
    throw new MeshRulesError(`--port ${options.port} is not a port number`);
  }
  return { issuer, namespace, factoryUrl };
}

/**
 * Builds, per receiving workload, a RequestAuthentication (issuer, per-key JWKS or inline keys,
 * audiences, token forwarded to the app) and an ALLOW AuthorizationPolicy that demands both the
 * caller's mTLS identity and its token's request principal in one source (they AND).
 */
export function buildMeshRules(options: MeshRulesOptions): IstioObject[] {
  const { issuer, namespace, factoryUrl } = validateOptions(options);
  const jwks = options.jwks === undefined ? undefined : publicJwks(options.jwks);
  const groups = options.workload !== undefined ? [{ workload: options.workload, audiences: options.audiences }] : options.audiences.map((a) => ({ workload: a, audiences: [a] }));
  const labels = { 'app.kubernetes.io/part-of': 'jwt-suite', 'app.kubernetes.io/managed-by': 'mesh-rules' };
  return groups.flatMap(({ workload, audiences }): IstioObject[] => [
    {
      apiVersion: 'security.istio.io/v1beta1',
      kind: 'RequestAuthentication',
      metadata: { name: `${workload}-jwt`, namespace, labels },
      spec: {
        selector: { matchLabels: { app: workload } },
        jwtRules: [
          {
            issuer,
            // The per-key JWKS: only keys of options.key verify, so another key's token with a forged sub fails.
            // With userKey, the JWKS of both keys (/keys/a,b/jwks.json) and no other.
            ...(jwks ? { jwks: JSON.stringify(jwks) } : { jwksUri: keyJwksUrl(factoryUrl, options.userKey ? `${options.key},${options.userKey}` : options.key) }),
            audiences: [...audiences, ...(options.userKey ? (options.userAudiences ?? []) : [])],
            // The app verifies the token too; without this Envoy removes it after checking.
            forwardOriginalToken: true,
          },
        ],
      },
    },
    {
      apiVersion: 'security.istio.io/v1beta1',
      kind: 'AuthorizationPolicy',
      metadata: { name: `${workload}-allow-${options.key}`, namespace, labels },
      spec: {
        selector: { matchLabels: { app: workload } },
        action: 'ALLOW',
        rules: [
          {
            from: [{ source: { principals: [peerPrincipal(namespace, options.key)], requestPrincipals: [requestPrincipal(issuer, options.key)] } }],
            ...(options.port !== undefined ? { to: [{ operation: { ports: [String(options.port)] } }] } : {}),
          },
        ],
      },
    },
  ]);
}
