/**
 * The negative-token variants and the verdict each gets, free of node APIs so the browser console
 * shows the same table the factory answers with. The verdicts quote Envoy's jwt_authn status
 * strings (source/common/jwt/status.cc).
 */

export const VARIANTS = [
  'expired',
  'not-yet-valid',
  'wrong-issuer',
  'wrong-audience',
  'unknown-kid',
  'wrong-alg',
  'bad-signature',
  'no-exp',
  'oversize',
  'alg-none',
] as const;
export type Variant = (typeof VARIANTS)[number];

/** What a mesh and the factory's own /verify answer for a variant. */
export interface Verdict {
  /** Istio / Envoy jwt_authn: the status and body it answers. */
  envoy: string;
  /** The factory's /verify error code. */
  verify: string;
}

/** The verdict per variant (documented in the README with the conditions). */
export const VERDICTS: Readonly<Record<Variant, Verdict>> = Object.freeze({
  expired: { envoy: '401 Jwt is expired', verify: 'expired' },
  'not-yet-valid': { envoy: '401 Jwt not yet valid', verify: 'not_before' },
  'wrong-issuer': { envoy: '401 Jwt issuer is not configured', verify: 'issuer_invalid' },
  'wrong-audience': { envoy: '403 Audiences in Jwt are not allowed (when the rule lists audiences)', verify: 'audience_invalid' },
  'unknown-kid': { envoy: "401 Jwks doesn't have key to match kid or alg from Jwt", verify: 'unknown_kid' },
  'wrong-alg': { envoy: "401 Jwks doesn't have key to match kid or alg from Jwt", verify: 'invalid_algorithm' },
  'bad-signature': { envoy: '401 Jwt verification fails', verify: 'invalid_signature' },
  'no-exp': { envoy: 'accepted (Istio does not set require_expiration)', verify: 'exp_missing' },
  oversize: { envoy: 'accepted up to max_request_headers_kb (60 KiB by default); many proxies refuse headers over 8 KiB', verify: 'too_large' },
  'alg-none': { envoy: '401 Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections', verify: 'malformed' },
});

/** The issuer and audience a wrong-issuer / wrong-audience token carries (.invalid never resolves, RFC 2606). */
export const WRONG_ISSUER = 'https://wrong-issuer.invalid/';
export const WRONG_AUDIENCE = 'wrong-audience.invalid';
