/**
 * Istio's value patterns, matched without building a RegExp from policy or request text: a
 * value is only ever literal text, `*` (Istio's wildcard) and the fixed shapes istiod writes
 * around it (istio/istio pilot/pkg/security/authz/model/generator.go: namespaces
 * `.*\/ns/<ns>/.*`, service accounts `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`, the `{*}` and
 * `{**}` path templates of matcher/path_template.go), on the linear automaton of mesh/glob.ts.
 */

import { globMatches, literal, starGlob, type GlobElement } from '../glob.js';

const SPIFFE = 'spiffe://';

/** srcNamespaceGenerator: regex `.*\/ns/<value, * as .*>/.*`: the peer's SPIFFE id contains `/ns/<value>/`. */
export function namespaceMatches(value: string, peer: string | undefined): boolean {
  return peer !== undefined && globMatches(starGlob(`*/ns/${value}/*`), peer);
}

/**
 * srcServiceAccountGenerator: `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?` for "ns/sa" or "sa" (in
 * the policy's namespace), both literal. The earliest `/ns/<ns>/` leaves the longest rest, and
 * any `sa/<sa>` a later one allows, it allows too: one scan for each.
 */
export function serviceAccountMatches(policyNamespace: string, value: string, peer: string | undefined): boolean {
  if (peer === undefined || !peer.startsWith(SPIFFE)) return false;
  const slash = value.indexOf('/');
  const [ns, sa] = slash >= 0 ? [value.slice(0, slash), value.slice(slash + 1)] : [policyNamespace, value];
  const at = peer.indexOf(`/ns/${ns}/`, SPIFFE.length + 1);
  if (at < 0) return false;
  const rest = peer.slice(at + `/ns/${ns}/`.length);
  const needle = `sa/${sa}`;
  for (let p = rest.indexOf(needle); p >= 0; p = rest.indexOf(needle, p + 1)) {
    const before = p === 0 || (p >= 2 && rest[p - 1] === '/');
    const end = p + needle.length;
    const after = end === rest.length || (rest[end] === '/' && end + 1 < rest.length);
    if (before && after) return true;
  }
  return false;
}

/** Whether a path pattern uses Istio's templates ({*} one segment, {**} any number of segments). */
export function isPathTemplate(pattern: string): boolean {
  return pattern.includes('{*}') || pattern.includes('{**}');
}

/** Path templates (Istio 1.21+, Envoy's uri_template): `{*}` one non-empty segment, `{**}` any run; the rest literal. */
export function pathTemplateMatches(pattern: string, path: string): boolean {
  const elements = pattern
    .split(/(\{\*\*\}|\{\*\})/)
    .flatMap((part): GlobElement[] => (part === '{**}' ? [{ star: 'any' }] : part === '{*}' ? [{ one: 'segment' }, { star: 'segment' }] : literal(part)));
  return globMatches(elements, path);
}

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
