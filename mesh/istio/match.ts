/**
 * Istio's request principal patterns, as istiod splits them before writing RBAC
 * (istio/istio pilot/pkg/security/authz/model/generator.go). The other value patterns
 * (namespaces, service accounts, path templates) become Envoy matchers in mesh/translate/rbac.ts
 * and run in mesh/envoy/rbac.ts.
 */

/** How one side (iss or sub) of a request principal pattern matches. */
export type PrincipalPart = { any: true } | { exact: string } | { prefix: string } | { suffix: string };

/**
 * requestPrincipalGenerator.extendedPrincipal: the value is split at its LAST "/" (issuers are
 * URLs) and iss and sub are matched apart; `*` is any non-empty value, `*x` / `x*` a suffix /
 * prefix on the side that holds the star.
 */
export function requestPrincipalParts(value: string): { iss: PrincipalPart; sub: PrincipalPart } {
  const idx = value.lastIndexOf('/');
  const found = idx >= 0;
  const iss = found ? value.slice(0, idx) : value;
  const sub = found ? value.slice(idx + 1) : '';
  const any = { any: true } as const;
  if (value === '*') return { iss: any, sub: any };
  if (value.startsWith('*')) {
    if (found) return { iss: iss === '*' ? any : { suffix: iss.slice(1) }, sub: { exact: sub } };
    return { iss: any, sub: { suffix: value.slice(1) } };
  }
  if (value.endsWith('*')) {
    if (found) return { iss: { exact: iss }, sub: sub === '*' ? any : { prefix: sub.slice(0, -1) } };
    return { iss: { prefix: value.slice(0, -1) }, sub: any };
  }
  return { iss: { exact: iss }, sub: { exact: sub } };
}
