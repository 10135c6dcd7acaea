/**
 * A very small DOM helper: elements are built with text nodes only (never innerHTML), so nothing
 * a token, a policy or the factory says can become markup.
 */

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | undefined | ((event: Event) => void)>;

/** `h('p', { class: 'hint' }, 'text', child)`: an element with attributes, listeners (`on…`) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === 'function') el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) el.append(typeof child === 'number' ? String(child) : child);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element with attributes and children. */
export function s(tag: string, attrs: Record<string, string | number> = {}, ...children: Array<Node | string>): SVGElement {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  el.append(...children);
  return el;
}

/** The element with this id (the page is static: a missing one is a bug). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
}

/** Replaces an element's children. */
export function show(target: HTMLElement, ...children: Child[]): void {
  target.replaceChildren(...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false).map((c) => (typeof c === 'number' ? String(c) : c)));
}

/** A verdict box: ok, bad or warn, with a title and a detail line. */
export function verdict(kind: 'ok' | 'bad' | 'warn', title: string, detail?: string): HTMLElement {
  return h('div', { class: `verdict ${kind}` }, title, detail ? h('span', { class: 'detail' }, detail) : null);
}

/** Pretty JSON in a <pre>. */
export const json = (value: unknown, label?: string) => h('pre', label ? { 'aria-label': label, tabindex: 0 } : { tabindex: 0 }, JSON.stringify(value, null, 2));

/** The value of a form control by id, trimmed. */
export const valueOf = (id: string) => byId<HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement>(id).value.trim();
