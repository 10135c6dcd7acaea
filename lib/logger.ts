import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Paths that must never reach a log line. Tokens, keys and secrets are logged by id only
 * (kid, jti, keyId); these redactions are a second line of defence.
 */
export const REDACTED_PATHS = [
  'token',
  '*.token',
  'privateKey',
  '*.privateKey',
  'secret',
  '*.secret',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
  'authorization',
];

/** Creates the JSON logger used by every process of the suite. */
export function createLogger(
  options: { level?: string; name?: string } = {},
  destination?: DestinationStream,
): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      name: options.name,
      base: { pid: process.pid, ...(options.name ? { service: options.name } : {}) },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** A logger that writes nothing, for unit tests. */
export const silentLogger = (): Logger => pino({ level: 'silent' });

/**
 * How an error is logged: name, message and code on one line; the stack only when the logger is
 * at debug or trace (a stack is long, and its frames may quote request data).
 */
export function errorFields(logger: Logger, err: unknown): { name?: string; message: string; code?: string; stack?: string } {
  if (!(err instanceof Error)) return { message: String(err) };
  const code = (err as { code?: unknown }).code;
  return {
    name: err.name,
    message: err.message,
    ...(typeof code === 'string' || typeof code === 'number' ? { code: String(code) } : {}),
    ...(logger.isLevelEnabled('debug') && err.stack ? { stack: err.stack } : {}),
  };
}
