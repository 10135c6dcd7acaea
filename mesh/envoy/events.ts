import type { Status } from './jwt_verify.js';

/**
 * What the sidecar's filters did with one request, in order, as data: mesh/explain turns these
 * into sentences; tests can assert them directly. Names are Envoy's (providers `origins-N`,
 * RBAC policy names as istiod wrote them).
 */

/** Where a token was found; header and query locations can be cleared, cookies cannot. */
export type TokenLocation = { kind: 'header'; name: string; prefix: string } | { kind: 'param'; name: string } | { kind: 'cookie'; name: string };

/** Why jwt_authn refused one token, with what the sentence needs. */
export type TokenRejection =
  | { check: 'parse' }
  | { check: 'issuer'; iss: string; allowed: string[] }
  | { check: 'time'; nbf: number; exp: number; now: number; skew: number }
  | { check: 'audience'; configured: string[]; got: string[] }
  | { check: 'jwks'; invalid: string }
  | { check: 'signature'; alg: string; kid: string; tried: number; keys: { kid?: string; alg?: string }[] };

/** The results of one RBAC policy: per permission and per principal, the AND entries evaluated (up to the first that fails). */
export interface PolicyTrace {
  name: string;
  matched: boolean;
  permissions: AlternativeTrace[];
  principals: AlternativeTrace[];
}

/** One permission or principal: whether it matched, and its AND entries in order (hit: which value of an OR matched). */
export interface AlternativeTrace {
  ok: boolean;
  entries: { ok: boolean; hit?: number }[];
}

/** What the RBAC matchers saw, for the explanation of each value. */
export interface RbacAttributes {
  method: string;
  host: string;
  path: string;
  headers: Record<string, string>;
  port?: number;
  peer?: string;
  sourceIp?: string;
  remoteIp?: string;
  destinationIp?: string;
  sni?: string;
  payload?: Record<string, unknown>;
}

export type TraceEvent =
  | { kind: 'path-normalized'; path: string }
  | { kind: 'jwt-start'; filter: number }
  | { kind: 'jwt-cors-preflight' }
  | { kind: 'jwt-no-token'; provider: string; locations: TokenLocation[] }
  | { kind: 'jwt-rejected'; provider: string; location: TokenLocation; status: Status; reason: TokenRejection }
  | { kind: 'jwt-valid'; provider: string; location: TokenLocation; iss: string; alg: string; keyKid?: string; nbf: number; exp: number; now: number; skew: number; audiences: string[] }
  | { kind: 'jwt-payload-header'; provider: string; location: TokenLocation; header: string }
  | { kind: 'jwt-claim-header'; provider: string; location: TokenLocation; header: string; claim: string; value?: string; json: boolean }
  | { kind: 'jwt-token-removed'; provider: string; location: TokenLocation }
  | { kind: 'jwt-inner-and' }
  | { kind: 'jwt-done'; status: Status; provider?: string; payload?: Record<string, unknown> }
  | { kind: 'rbac'; filter: number; action: 'ALLOW' | 'DENY' | 'LOG'; shadow: boolean; policies: PolicyTrace[]; effective?: string; attributes: RbacAttributes }
  | { kind: 'ext-authz'; filter: number; provider: string; enabled: boolean; allowed: boolean };
