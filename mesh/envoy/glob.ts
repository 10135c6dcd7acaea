/**
 * Linear-time matching for Envoy's uri_template path patterns (`*` one segment, `**` any run),
 * so that no value from a policy or a request ever becomes a RegExp (V8's backtracking engine
 * is exponential on patterns like `(a+)+b`). A
 * pattern is a list of elements matched by simulating the automaton over every position at
 * once (Thompson's construction): time O(value length x pattern length), no backtracking.
 */

/** One element: a literal character, one character but `/`, or any run (`*`: any characters; `segment`: characters but `/`). */
export type GlobElement = { char: string } | { one: 'segment' } | { star: 'any' | 'segment' };

/** The elements of a literal text. */
export const literal = (text: string): GlobElement[] => Array.from(text, (char) => ({ char }));

/** True when `value` as a whole matches `elements`. */
export function globMatches(elements: readonly GlobElement[], value: string): boolean {
  const n = elements.length;
  let current = new Uint8Array(n + 1);
  let next = new Uint8Array(n + 1);
  // A star may match nothing: a state before a star also stands after it.
  const add = (set: Uint8Array, i: number) => {
    while (i <= n && set[i] === 0) {
      set[i] = 1;
      const e = elements[i];
      if (e === undefined || !('star' in e)) return;
      i += 1;
    }
  };
  add(current, 0);
  for (const ch of value) {
    next.fill(0);
    let alive = false;
    for (let i = 0; i < n; i += 1) {
      if (current[i] === 0) continue;
      const e = elements[i]!;
      if ('char' in e) {
        if (e.char === ch) add(next, i + 1);
      } else if ('one' in e) {
        if (ch !== '/') add(next, i + 1);
      } else if (e.star === 'any' || ch !== '/') {
        add(next, i);
      }
      alive = true;
    }
    if (!alive) return false;
    [current, next] = [next, current];
  }
  return current[n] === 1;
}
