import { AppError } from '../../lib/errors.js';

/**
 * The error names of RFC 6749 §4.1.2.1 / §5.2, RFC 7009 §2.2.1, OIDC Core §3.1.2.6 and
 * RFC 8707 §2: a client library switches on these strings, so they are kept exactly.
 */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'unsupported_response_type'
  | 'unsupported_token_type'
  | 'access_denied'
  | 'login_required'
  | 'request_not_supported'
  | 'request_uri_not_supported'
  | 'invalid_token'
  | 'insufficient_scope'
  | 'temporarily_unavailable'
  | 'server_error';

/** The status each error answers with at the token-style endpoints (RFC 6749 §5.2, RFC 6750 §3.1). */
const STATUS: Record<OAuthErrorCode, number> = {
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  invalid_scope: 400,
  invalid_target: 400,
  unsupported_response_type: 400,
  unsupported_token_type: 400,
  access_denied: 403,
  login_required: 400,
  request_not_supported: 400,
  request_uri_not_supported: 400,
  invalid_token: 401,
  insufficient_scope: 403,
  // RFC 6749 §4.1.2.1: the server cannot handle the request right now; 503 where no redirect carries it.
  temporarily_unavailable: 503,
  server_error: 500,
};

/**
 * An OAuth error: an AppError whose `code` is the RFC name. The OIDC routes render it as the
 * RFC 6749 §5.2 body `{ error, error_description }` (not the suite's `{ error: { code } }`),
 * since that is what every OAuth client parses.
 */
export class OAuthError extends AppError {
  declare readonly code: OAuthErrorCode;
  /** The `WWW-Authenticate` value to send, if any (RFC 6749 §5.2 for invalid_client, RFC 6750 §3). */
  readonly wwwAuthenticate: string | undefined;

  constructor(code: OAuthErrorCode, description: string, options: { wwwAuthenticate?: string; status?: number; headers?: Record<string, string> } = {}) {
    // Every RFC error's description is written for the client; only server_error hides its message.
    super(code, options.status ?? STATUS[code], description, { expose: code !== 'server_error', ...(options.headers ? { headers: options.headers } : {}) });
    this.name = 'OAuthError';
    this.wwwAuthenticate = options.wwwAuthenticate;
  }

  /**
   * True when the error must be shown to the user and never sent to the redirect_uri: the
   * client or its redirect_uri could not be trusted (RFC 6749 §4.1.2.1, first paragraph).
   */
  page = false;

  /** The RFC 6749 §5.2 JSON body. */
  toJSON(): { error: OAuthErrorCode; error_description: string } {
    return { error: this.code, error_description: this.expose ? this.message : 'Internal error' };
  }
}

/** 503 temporarily_unavailable with Retry-After (RFC 9110 §10.2.3): the provider's state cannot be read or written right now. */
export const temporarilyUnavailable = (description: string, retryAfterSeconds = 2) =>
  new OAuthError('temporarily_unavailable', description, { headers: { 'Retry-After': String(retryAfterSeconds) } });

/** Shorthand for the common case. */
export const oauthError = (code: OAuthErrorCode, description: string) => new OAuthError(code, description);

/** 401 invalid_client with the challenge RFC 6749 §5.2 asks for when the client used (or could use) Basic. */
export const invalidClient = (description: string) =>
  new OAuthError('invalid_client', description, { wwwAuthenticate: 'Basic realm="jwt-factory", charset="UTF-8"' });

/**
 * A client locked after failed authentications: still 401 invalid_client (RFC 6749 §5.2 has no
 * rate-limit error, and every client library handles this one), with Retry-After (RFC 9110
 * §10.2.3) saying when it may try again.
 */
export const clientLocked = (retryAfterSeconds: number) =>
  new OAuthError('invalid_client', `Too many failed authentications for this client: try again in ${retryAfterSeconds} seconds`, {
    wwwAuthenticate: 'Basic realm="jwt-factory", charset="UTF-8"',
    headers: { 'Retry-After': String(retryAfterSeconds) },
  });

/** An authorization request whose client or redirect_uri is not trusted: an error page, never a redirect. */
export function pageError(description: string): OAuthError {
  const err = new OAuthError('invalid_request', description);
  err.page = true;
  return err;
}
