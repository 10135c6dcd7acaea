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

const CENSOR = '[redacted]';

/** The `*.name` paths of REDACTED_PATHS: a name redacted one level down under any field. */
const NESTED_NAMES = REDACTED_PATHS.filter((p) => p.startsWith('*.')).map((p) => p.slice(2));

/**
 * Redacts the `*.name` paths before pino serializes the line. Given to pino's `redact`, a
 * wildcard path runs pino's redactor on every field of every line, strings and numbers too
 * (a clone and a walk each: a third of the cost of the per-request line); here only a field
 * whose value is an object holding one of the names is copied, with the name censored.
 */
function redactNested(fields: Record<string, unknown>): Record<string, unknown> {
  let out = fields;
  for (const key of Object.keys(fields)) {
    const value = fields[key];
    if (value === null || typeof value !== 'object') continue;
    const names = NESTED_NAMES.filter((name) => Object.hasOwn(value, name));
    if (names.length === 0) continue;
    if (out === fields) out = { ...fields };
    const copy: Record<string, unknown> = { ...value };
    for (const name of names) copy[name] = CENSOR;
    out[key] = copy;
  }
  return out;
}

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
      redact: { paths: REDACTED_PATHS.filter((p) => !p.startsWith('*.')), censor: CENSOR },
      formatters: { log: redactNested },
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
