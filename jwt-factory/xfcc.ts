/**
 * The `X-Forwarded-Client-Cert` header as Envoy writes it (Envoy docs, "HTTP header
 * manipulation: x-forwarded-client-cert"): elements separated by `,`, one per proxy that
 * terminated mTLS; each element `key=value` pairs separated by `;`; a value holding `,`, `;`,
 * `=` or `"` is double-quoted, with `\"` for a quote inside. Keys are case-insensitive: By,
 * Hash, Cert, Chain, Subject, URI, DNS. Istio's sidecars append their element
 * (APPEND_FORWARD with Subject, URI and DNS; pilot's buildSidecarInboundHTTPOpts), so only the
 * last element is the one the receiving sidecar wrote; every earlier one came from the caller.
 */

/** 16 KiB: Node's whole default header limit; Envoy's own element is a few hundred bytes. */
export const MAX_XFCC_BYTES = 16_384;
/** A chain of sidecars and gateways is short; more elements than this is not a mesh. */
export const MAX_XFCC_ELEMENTS = 16;

/** The keys Envoy writes, by their lower-case name. */
const KEYS = { by: 'by', hash: 'hash', cert: 'cert', chain: 'chain', subject: 'subject', uri: 'uri', dns: 'dns' } as const;
type Key = (typeof KEYS)[keyof typeof KEYS];

/** One proxy's element: every key may appear several times (a certificate has several SANs). */
export type XfccElement = Readonly<Record<Key, readonly string[]>>;

/** Why a header was not usable; `reason` is stable, the message may be shown to the caller. */
export class XfccError extends Error {
  constructor(
    readonly reason: 'too_large' | 'malformed' | 'too_many_elements' | 'unknown_key' | 'not_our_sidecar' | 'no_uri' | 'several_uris',
    message: string,
  ) {
    super(message);
    this.name = 'XfccError';
  }
}

const emptyElement = (): Record<Key, string[]> => ({ by: [], hash: [], cert: [], chain: [], subject: [], uri: [], dns: [] });

/** Parses a whole header into its elements, in order; throws XfccError on anything Envoy would not write. */
export function parseXfcc(header: string): XfccElement[] {
  if (Buffer.byteLength(header, 'utf8') > MAX_XFCC_BYTES) throw new XfccError('too_large', `X-Forwarded-Client-Cert exceeds ${MAX_XFCC_BYTES} bytes`);
  const elements: XfccElement[] = [];
  let element = emptyElement();
  let pairs = 0;
  let i = 0;
  const malformed = (what: string) => new XfccError('malformed', `X-Forwarded-Client-Cert is malformed at character ${i}: ${what}`);
  // One pass, one character at a time: no backtracking, so a hostile header costs its length.
  for (;;) {
    const keyStart = i;
    while (i < header.length && header[i] !== '=' && header[i] !== ';' && header[i] !== ',') i += 1;
    if (header[i] !== '=') throw malformed('expected key=value');
    const name = header.slice(keyStart, i).trim().toLowerCase();
    const key = (KEYS as Record<string, Key | undefined>)[name];
    if (key === undefined) throw new XfccError('unknown_key', `X-Forwarded-Client-Cert has an unknown key "${name.slice(0, 32)}" (Envoy writes By, Hash, Cert, Chain, Subject, URI, DNS)`);
    i += 1;
    let value = '';
    if (header[i] === '"') {
      i += 1;
      for (;;) {
        if (i >= header.length) throw malformed('unterminated quoted value');
        const c = header[i]!;
        if (c === '\\' && header[i + 1] === '"') {
          value += '"';
          i += 2;
        } else if (c === '"') {
          i += 1;
          break;
        } else {
          value += c;
          i += 1;
        }
      }
      if (i < header.length && header[i] !== ';' && header[i] !== ',') throw malformed('text after a quoted value');
    } else {
      const start = i;
      while (i < header.length && header[i] !== ';' && header[i] !== ',') {
        if (header[i] === '"' || header[i] === '=') throw malformed(`unquoted ${header[i]} in a value`);
        i += 1;
      }
      value = header.slice(start, i).trim();
    }
    element[key].push(value);
    pairs += 1;
    if (i >= header.length || header[i] === ',') {
      elements.push(Object.freeze(element));
      if (elements.length > MAX_XFCC_ELEMENTS) throw new XfccError('too_many_elements', `X-Forwarded-Client-Cert has more than ${MAX_XFCC_ELEMENTS} elements`);
      if (i >= header.length) return elements;
      element = emptyElement();
      pairs = 0;
    }
    i += 1;
    if (pairs === 0 && i >= header.length) throw malformed('empty element');
  }
}

/**
 * The caller's identity as the receiving sidecar saw it: the last element must be written by
 * `expectedBy` (the factory's own SPIFFE id, which Envoy puts in By from its own certificate)
 * and carry exactly one URI SAN, the peer's. Earlier elements are the caller's to write and are
 * ignored.
 */
export function sidecarPeerUri(header: string, expectedBy: string): string {
  const elements = parseXfcc(header);
  const last = elements[elements.length - 1]!;
  if (last.by.length !== 1 || last.by[0] !== expectedBy) {
    throw new XfccError('not_our_sidecar', `The last X-Forwarded-Client-Cert element was not written by this factory's sidecar (By must be ${expectedBy}, XFCC_BY)`);
  }
  if (last.uri.length === 0 || last.uri[0] === '') throw new XfccError('no_uri', "The caller's certificate has no URI SAN (a SPIFFE id) in X-Forwarded-Client-Cert");
  if (last.uri.length > 1) throw new XfccError('several_uris', "The caller's certificate has several URI SANs in X-Forwarded-Client-Cert: which one is the caller is ambiguous");
  return last.uri[0]!;
}
