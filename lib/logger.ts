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

/**
 * pino's `isoTime` (`,"time":"2026-12-02T10:00:00.000Z"`), formatted once per millisecond: at
 * thousands of requests a second most lines share the millisecond of the line before.
 */
function isoTimeOncePerMs(): () => string {
  let lastMs = -1;
  let last = '';
  return () => {
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      last = `,"time":"${new Date(now).toISOString()}"`;
    }
    return last;
  };
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
      timestamp: isoTimeOncePerMs(),
    },
    destination,
  );
}

/** The names a field of a line may not carry in the clear (REDACTED_PATHS' own names, top level or one down). */
const REDACTED_NAMES = new Set(REDACTED_PATHS.map((p) => p.split('.').pop()!).concat(['req', 'headers']));

/** A field value the line writer writes itself: what JSON.stringify and pino spell alike. */
const isPlain = (value: unknown) =>
  typeof value === 'string' || typeof value === 'boolean' || value === undefined || (typeof value === 'number' && Number.isFinite(value));

export type LineFields = Record<string, string | number | boolean | undefined>;

/**
 * One log line per request, as pino writes it (`level`, `time`, the logger's bindings, the
 * fields, `msg`: the same bytes, the same destination, the same level threshold), in one
 * JSON.stringify instead of pino's walk over the fields: the line every request writes, where the
 * walk cost more than the rest of a verification's own code (README "Performance"). A line with
 * anything else in it (an object, a name that pino redacts, a number JSON cannot spell) is
 * pino's, untouched.
 */
export function createLineWriter(logger: Logger): (level: 'info' | 'error', fields: LineFields, msg: string) => void {
  const internals = logger as unknown as Record<symbol, unknown>;
  return (level, fields, msg) => {
    if (!logger.isLevelEnabled(level)) return;
    const stream = internals[pino.symbols.streamSym] as { write(line: string): unknown; [key: symbol]: unknown };
    // A multistream reads the line's level from pino's own bookkeeping: leave those to pino.
    if (stream[pino.symbols.needsMetadataGsym]) {
      logger[level](fields, msg);
      return;
    }
    for (const key in fields) {
      if (!isPlain(fields[key]) || REDACTED_NAMES.has(key)) {
        logger[level](fields, msg);
        return;
      }
    }
    const time = (internals[pino.symbols.timeSym] as () => string)();
    const chindings = internals[pino.symbols.chindingsSym] as string;
    const body = JSON.stringify({ ...fields, msg });
    stream.write(`{"level":${logger.levels.values[level]}${time}${chindings},${body.slice(1)}\n`);
  };
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
