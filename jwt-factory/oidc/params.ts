import { oauthError } from './errors.js';

/** A request's parameters: each present at most once, as a string. */
export type Params = Readonly<Record<string, string | undefined>>;

/** Parameters RFC 8707 §2 (resource) and RFC 8693 §2.1 (audience) allow more than once. */
const REPEATABLE = new Set(['resource', 'audience']);

/**
 * Turns a parsed form or query (body-parser's or express's) into Params: RFC 6749 §3.1 says
 * parameters must not be included more than once, so a repeated one is invalid_request. The
 * repeatable ones come back joined by a space in `multi`.
 */
export function readParams(source: unknown): { params: Params; multi: Readonly<Record<string, readonly string[]>> } {
  const params: Record<string, string> = {};
  const multi: Record<string, string[]> = {};
  if (source === undefined || source === null) return { params, multi };
  if (typeof source !== 'object') throw oauthError('invalid_request', 'The parameters could not be read');
  for (const [name, value] of Object.entries(source as Record<string, unknown>)) {
    const values = Array.isArray(value) ? value : [value];
    if (values.some((v) => typeof v !== 'string')) throw oauthError('invalid_request', `Parameter ${name} is malformed`);
    if (REPEATABLE.has(name)) {
      multi[name] = values as string[];
      if (values.length === 1) params[name] = values[0] as string;
      continue;
    }
    if (values.length > 1) throw oauthError('invalid_request', `Parameter ${name} is included more than once`);
    // RFC 6749 §3.1: parameters sent without a value are treated as omitted.
    if (values[0] !== '') params[name] = values[0] as string;
  }
  return { params, multi };
}
