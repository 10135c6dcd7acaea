/**
 * Istio's value patterns, matched without building a RegExp from policy or request text: a
 * value is only ever literal text, `*` (Istio's wildcard) and the fixed shapes istiod writes
 * around it (istio/istio pilot/pkg/security/authz/model/generator.go: namespaces
 * `.*\/ns/<ns>/.*`, service accounts `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`, the `{*}` and
 * `{**}` path templates of matcher/path_template.go). The matcher is the classic greedy
 * wildcard walk: for a fixed pattern its time grows linearly with the input.
 */

/** A wildcard pattern: literal runs, `one` (exactly one character) and `many` (any, even none). */
export type Token = { lit: string } | { one: true } | { many: true };

const lit = (s: string): Token => ({ lit: s });
const ONE: Token = { one: true };
const MANY: Token = { many: true };
/** RE2 `.+`: at least one character. */
const PLUS: Token[] = [ONE, MANY];

/** Flattens tokens to per-character steps: a char to equal, '?' (any one) or '*' (any run). */
function steps(tokens: readonly Token[]): { kind: 'char' | 'one' | 'many'; ch?: string }[] {
  const out: { kind: 'char' | 'one' | 'many'; ch?: string }[] = [];
  for (const t of tokens) {
    if ('lit' in t) for (const ch of t.lit) out.push({ kind: 'char', ch });
    else out.push({ kind: 'one' in t ? 'one' : 'many' });
  }
  return out;
}

/**
 * The greedy wildcard walk over any sequence: `star(p)` marks a step that takes any run of
 * items, `fits(p, x)` whether a step takes one item. One backtrack point (the last star), so for
 * a fixed pattern the work grows linearly with the input.
 */
function greedy<P, X>(pattern: readonly P[], input: readonly X[], star: (p: P) => boolean, fits: (p: P, x: X) => boolean): boolean {
  let i = 0;
  let j = 0;
  let last = -1;
  let mark = 0;
  while (i < input.length) {
    const p = pattern[j];
    if (p !== undefined && !star(p) && fits(p, input[i]!)) {
      i++;
      j++;
    } else if (p !== undefined && star(p)) {
      last = j++;
      mark = i;
    } else if (last >= 0) {
      j = last + 1;
      i = ++mark;
    } else return false;
  }
  while (pattern[j] !== undefined && star(pattern[j]!)) j++;
  return j === pattern.length;
}

/** Whether the whole of `s` matches the pattern. */
export function wildMatch(tokens: readonly Token[], s: string): boolean {
  return greedy(steps(tokens), [...s], (p) => p.kind === 'many', (p, ch) => p.kind === 'one' || p.ch === ch);
}

/** An Istio value where `*` means any text (namespaces): literal parts joined by `many`. */
function globTokens(value: string): Token[] {
  return value.split('*').flatMap((part, i) => (i === 0 ? [lit(part)] : [MANY, lit(part)]));
}

/** srcNamespaceGenerator: the peer's SPIFFE id contains `/ns/<value>/`, `*` matching any text. */
export function namespaceMatches(value: string, peer: string | undefined): boolean {
  return peer !== undefined && wildMatch([MANY, lit('/ns/'), ...globTokens(value), lit('/'), MANY], peer);
}

/** srcServiceAccountGenerator: "ns/sa" or "sa" (in the policy's namespace), both literal. */
export function serviceAccountMatches(policyNamespace: string, value: string, peer: string | undefined): boolean {
  if (peer === undefined) return false;
  const slash = value.indexOf('/');
  const [ns, sa] = slash >= 0 ? [value.slice(0, slash), value.slice(slash + 1)] : [policyNamespace, value];
  const head = [lit('spiffe://'), ...PLUS, lit(`/ns/${ns}/`)];
  // (.+/|) and (/.+)? as four fixed shapes.
  return [[], [...PLUS, lit('/')]].some((middle) =>
    [[], [lit('/'), ...PLUS]].some((tail) => wildMatch([...head, ...middle, lit(`sa/${sa}`), ...tail], peer)),
  );
}

/** Whether a path pattern uses Istio's templates ({*} one segment, {**} any number of segments). */
export function isPathTemplate(pattern: string): boolean {
  return pattern.includes('{*}') || pattern.includes('{**}');
}

/**
 * Path templates (Istio 1.21+, Envoy's uri_template): compared segment by segment, `{*}` is one
 * non-empty segment and `{**}` any run of segments; other segments are literal.
 */
export function pathTemplateMatches(pattern: string, path: string): boolean {
  return greedy(pattern.split('/'), path.split('/'), (p) => p === '{**}', (p, seg) => (p === '{*}' ? seg !== '' : p === seg));
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
