/**
 * One error type for the whole suite. Each error carries a stable machine `code`, the HTTP
 * `status` it maps to and whether its message may be shown to a client (`expose`).
 * Modeled on panva/jose `util/errors.ts` and node-oidc-provider's `helpers/errors.js`.
 */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly expose: boolean;
  /** Extra public fields merged into the JSON error body (never secrets). */
  readonly details: Record<string, unknown> | undefined;
  /** Response headers the answer carries, such as Retry-After (RFC 9110 §10.2.3) on 429 and 503. */
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(
    code: string,
    status: number,
    message: string,
    options: { expose?: boolean; details?: Record<string, unknown>; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = status;
    this.expose = options.expose ?? status < 500;
    this.details = options.details;
    this.headers = options.headers;
  }
}

/** 400: the request is malformed or misses a field. */
export const badRequest = (message: string, code = 'bad_request', details?: Record<string, unknown>) =>
  new AppError(code, 400, message, { details });

/** 404: the named resource does not exist. */
export const notFound = (message: string, code = 'not_found', details?: Record<string, unknown>) =>
  new AppError(code, 404, message, { details });

/** 409: the request conflicts with the current state. */
export const conflict = (message: string, code = 'conflict', details?: Record<string, unknown>) =>
  new AppError(code, 409, message, { details });

/** Thrown at start-up when a setting is invalid; the message names the variable. */
export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(`Invalid setting ${variable}: ${message}`);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

/** True when `err` is one of ours. */
export const isAppError = (err: unknown): err is AppError => err instanceof AppError;
