import { expect } from 'vitest';
import type { Verdict } from '../../mesh/evaluate.js';
import type { Expect } from './cases.js';

/**
 * What a runner observed for one case. Runners fill what they can see: the gateway sees the
 * answer and what reached the upstream, not the principal or the explanation.
 */
export interface Outcome {
  status: number;
  body: string;
  wwwAuthenticate?: string;
  /** Upstream headers (lower-case names, every value) — only when the request was forwarded. */
  upstreamHeaders?: Record<string, string[]>;
  upstreamPath?: string;
  principal?: string | null;
  decidedBy?: string;
  steps?: string[];
}

const values = (v: string | string[] | undefined) => (v === undefined ? undefined : Array.isArray(v) ? v : [v]);

/** The engine's verdict as an outcome (engine and router runners). */
export function fromVerdict(v: Verdict): Outcome {
  const headers: Record<string, string[]> = {};
  for (const [k, val] of Object.entries(v.upstreamHeaders)) headers[k] = values(val)!;
  return {
    status: v.status,
    body: v.body,
    wwwAuthenticate: v.responseHeaders['www-authenticate'],
    upstreamHeaders: v.status === 200 ? headers : undefined,
    upstreamPath: v.status === 200 ? v.upstreamPath : undefined,
    principal: v.principal,
    decidedBy: v.decidedBy,
    steps: v.steps,
  };
}

/** Checks an outcome against a case's expectations; fields the runner cannot see are skipped. */
export function assertOutcome(o: Outcome, e: Expect): void {
  expect(o.status, `status (${o.body})`).toBe(e.status);
  if (e.body !== undefined) expect(o.body).toBe(e.body);
  if (e.status === 200 && e.body === undefined && o.upstreamHeaders === undefined) expect(o.body).toBe('');
  if (e.wwwAuthenticate !== undefined) expect(o.wwwAuthenticate).toBe(e.wwwAuthenticate);
  if (e.principal !== undefined && o.principal !== undefined) expect(o.principal).toBe(e.principal);
  if (e.decidedBy !== undefined && o.decidedBy !== undefined) expect(o.decidedBy).toContain(e.decidedBy);
  if (e.step !== undefined && o.steps !== undefined) expect(o.steps.join('\n')).toContain(e.step);
  if (o.upstreamHeaders) {
    for (const [k, v] of Object.entries(e.headers ?? {})) expect(o.upstreamHeaders[k], `upstream header ${k}`).toEqual(values(v));
    for (const [k, prefix] of Object.entries(e.headerPrefixes ?? {})) {
      expect(o.upstreamHeaders[k], `upstream header ${k}`).toHaveLength(1);
      expect(o.upstreamHeaders[k]![0]!.startsWith(prefix), `upstream header ${k} starts with ${prefix}`).toBe(true);
    }
    for (const k of e.absent ?? []) expect(o.upstreamHeaders[k], `upstream header ${k} must be absent`).toBeUndefined();
  }
  if (o.upstreamPath !== undefined) {
    if (e.upstreamPath !== undefined) expect(o.upstreamPath).toBe(e.upstreamPath);
    if (e.upstreamPathPrefix !== undefined) expect(o.upstreamPath.startsWith(e.upstreamPathPrefix), `${o.upstreamPath} starts with ${e.upstreamPathPrefix}`).toBe(true);
  }
}
