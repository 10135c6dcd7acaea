/**
 * Envoy's `safe_regex` (RE2, whole-value match) for the regexes istiod writes into RBAC
 * (pilot/pkg/security/authz/model/generator.go: `.+`, `.*\/ns/<ns>/.*`,
 * `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`, `spiffe://.*<suffix>`), on a Thompson automaton
 * whose state sets are cached as a DFA the way RE2's own DFA does: linear in the value, never a
 * JS RegExp (V8 backtracks; RE2 does not). The syntax read is
 * RE2's core: literals, `\` escapes, `.`, `[^c]`, `*`, `+`, `?`, `|`, `( )` and `(?: )`; anything
 * else (other classes, counted repetition, anchors, flags) is refused when the config is compiled.
 */

/** regexp.QuoteMeta: RE2 meta characters escaped, so a value is always a literal. */
export function quoteMeta(s: string): string {
  return s.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
}

type Node =
  | { t: 'char'; c: string }
  | { t: 'any' }
  | { t: 'notchar'; c: string }
  | { t: 'cat'; parts: Node[] }
  | { t: 'alt'; options: Node[] }
  | { t: 'rep'; node: Node; min: 0 | 1; max: 1 | typeof Infinity };

/** A regex this engine does not take, with where it stops. */
export class UnsupportedRegexError extends Error {
  override readonly name = 'UnsupportedRegexError';
}

function parse(src: string): Node {
  let pos = 0;
  const fail = (why: string) => new UnsupportedRegexError(`safe_regex "${src}" at ${pos}: ${why}`);
  const alternation = (): Node => {
    const options = [sequence()];
    while (src[pos] === '|') {
      pos += 1;
      options.push(sequence());
    }
    return options.length === 1 ? options[0]! : { t: 'alt', options };
  };
  const sequence = (): Node => {
    const parts: Node[] = [];
    while (pos < src.length && src[pos] !== '|' && src[pos] !== ')') {
      let atom = primary();
      const op = src[pos];
      if (op === '*' || op === '+' || op === '?') {
        pos += 1;
        atom = { t: 'rep', node: atom, min: op === '+' ? 1 : 0, max: op === '?' ? 1 : Infinity };
        if (pos < src.length && '*+?{'.includes(src[pos]!)) throw fail('stacked or non-greedy repetition');
      }
      parts.push(atom);
    }
    return { t: 'cat', parts };
  };
  const primary = (): Node => {
    const ch = src[pos]!;
    if (ch === '(') {
      pos += src.startsWith('(?:', pos) ? 3 : 1;
      if (src[pos] === '?') throw fail('group flags');
      const inner = alternation();
      if (src[pos] !== ')') throw fail('missing )');
      pos += 1;
      return inner;
    }
    if (ch === '\\') {
      const next = src[pos + 1];
      if (next === undefined || /[A-Za-z0-9]/.test(next)) throw fail('escape classes');
      pos += 2;
      return { t: 'char', c: next };
    }
    if (ch === '.') {
      pos += 1;
      return { t: 'any' };
    }
    // One negated character, `[^c]` (what Envoy's uri_template segments are); other classes are refused.
    if (ch === '[' && src[pos + 1] === '^' && src[pos + 3] === ']' && !'\\]'.includes(src[pos + 2] ?? ']')) {
      pos += 4;
      return { t: 'notchar', c: src[pos - 2]! };
    }
    if ('[]{}^$*+?'.includes(ch)) throw fail(`"${ch}"`);
    pos += 1;
    return { t: 'char', c: ch };
  };
  const node = alternation();
  if (pos !== src.length) throw fail('unbalanced )');
  return node;
}

/** One automaton state: a character test to the next state, or empty moves. */
type State = { test: 'char'; c: string; out: number } | { test: 'any'; out: number } | { test: 'notchar'; c: string; out: number } | { test: 'split'; outs: number[] } | { test: 'match' };

/** A compiled regex: call it with a value for RE2::FullMatch. */
export type CompiledRegex = (value: string) => boolean;

/** Compiles `src` (see the module comment); throws UnsupportedRegexError for syntax outside it. */
export function compileRegex(src: string): CompiledRegex {
  const states: State[] = [];
  const add = (s: State) => states.push(s) - 1;
  // Builds `node` so that it continues at `next`; returns its entry state.
  const build = (node: Node, next: number): number => {
    switch (node.t) {
      case 'char':
        return add({ test: 'char', c: node.c, out: next });
      case 'any':
        return add({ test: 'any', out: next });
      case 'notchar':
        return add({ test: 'notchar', c: node.c, out: next });
      case 'cat':
        return node.parts.reduceRight((out, part) => build(part, out), next);
      case 'alt':
        return add({ test: 'split', outs: node.options.map((o) => build(o, next)) });
      case 'rep': {
        if (node.max === 1) return add({ test: 'split', outs: [build(node.node, next), next] });
        const loop = add({ test: 'split', outs: [] });
        const body = build(node.node, loop);
        (states[loop] as { outs: number[] }).outs = [body, next];
        return node.min === 1 ? body : loop;
      }
    }
  };
  const start = build(parse(src), add({ test: 'match' }));
  const n = states.length;
  // The states reachable by empty moves, precomputed: only character tests and the match remain.
  const closures: Int32Array[] = states.map((_, i) => {
    const seen = new Set<number>();
    const out: number[] = [];
    const stack = [i];
    while (stack.length > 0) {
      const j = stack.pop()!;
      if (seen.has(j)) continue;
      seen.add(j);
      const s = states[j]!;
      if (s.test === 'split') stack.push(...[...s.outs].reverse());
      else out.push(j);
    }
    return Int32Array.from(out);
  });
  // Each state's character as a code point; -1 for `.` (any but newline), -2 for the match state, -4 for `[^c]`.
  const codes = Int32Array.from(states.map((s) => (s.test === 'char' ? s.c.codePointAt(0)! : s.test === 'any' ? -1 : s.test === 'match' ? -2 : s.test === 'notchar' ? -4 : -3)));
  const excluded = Int32Array.from(states.map((s) => (s.test === 'notchar' ? s.c.codePointAt(0)! : -1)));
  const outs = Int32Array.from(states.map((s) => ('out' in s ? s.out : -1)));
  const NEWLINE = 10;
  /** One set of automaton states (a lazily built DFA state, as RE2's DFA does), with its transitions by code point. */
  interface SetState {
    members: Int32Array;
    accepting: boolean;
    next: Map<number, SetState | null>;
  }
  const MAX_SETS = 1024;
  let sets = new Map<string, SetState>();
  const setOf = (members: number[]): SetState => {
    members.sort((x, y) => x - y);
    const key = members.join(',');
    let set = sets.get(key);
    if (!set) {
      // A bounded cache: when full it starts again, so memory stays flat whatever the input.
      if (sets.size >= MAX_SETS) sets = new Map();
      set = { members: Int32Array.from(members), accepting: members.some((m) => codes[m] === -2), next: new Map() };
      sets.set(key, set);
    }
    return set;
  };
  const step = (from: SetState, cp: number): SetState | null => {
    const seen = new Set<number>();
    for (const i of from.members) {
      const c = codes[i]!;
      if (c === cp || (c === -1 && cp !== NEWLINE) || (c === -4 && cp !== excluded[i])) for (const j of closures[outs[i]!]!) seen.add(j);
    }
    return seen.size === 0 ? null : setOf([...seen]);
  };
  const initial = setOf([...closures[start]!]);
  return (value) => {
    let set: SetState | null = initial;
    for (let k = 0; k < value.length; k += 1) {
      const cp = value.codePointAt(k)!;
      if (cp > 0xffff) k += 1;
      let next = set.next.get(cp);
      if (next === undefined) {
        next = step(set, cp);
        set.next.set(cp, next);
      }
      if (next === null) return false;
      set = next;
    }
    return set.accepting;
  };
}
