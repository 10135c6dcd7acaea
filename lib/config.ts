import { z } from 'zod';
import { ConfigError } from './errors.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** pino's levels, quietest last. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Settings whose value may be a secret (a key, a password in a URL): an error names them but never echoes the value. */
const SECRET_SETTING = /(^|_)(KEY|SECRET|PASSWORD|STORE)(_|$)/;

/**
 * Parses an environment object against a zod object schema whose keys are variable names.
 * Returns a frozen result, or throws a ConfigError whose sentence names the first bad variable.
 * Only a process's `main` passes `process.env`; everything else receives the parsed config.
 */
export function parseEnv<S extends z.ZodObject<z.ZodRawShape>>(schema: S, env: Env): Readonly<z.infer<S>> {
  const present: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = env[key];
    // An empty variable means "not set", as in most shells and .env files.
    if (value !== undefined && value.trim() !== '') present[key] = value.trim();
  }
  const result = schema.safeParse(present);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const variable = String(issue.path[0] ?? 'environment');
    const got = SECRET_SETTING.test(variable) ? undefined : present[variable];
    throw new ConfigError(variable, `${issue.message}${got === undefined ? '' : ` (got "${got}")`}`);
  }
  return Object.freeze(result.data);
}

/** Reusable setting parsers with clear messages. */
export const setting = {
  port: (fallback: number) =>
    z.coerce
      .number({ message: 'must be a port number' })
      .int('must be a whole number')
      .min(0, 'must be between 0 and 65535')
      .max(65535, 'must be between 0 and 65535')
      .default(fallback),
  seconds: (fallback: number, min = 0, max = 31_536_000) =>
    z.coerce
      .number({ message: 'must be a number of seconds' })
      .int('must be a whole number of seconds')
      .min(min, `must be at least ${min}`)
      .max(max, `must be at most ${max}`)
      .default(fallback),
  integer: (fallback: number, min: number, max: number) =>
    z.coerce
      .number({ message: 'must be a number' })
      .int('must be a whole number')
      .min(min, `must be at least ${min}`)
      .max(max, `must be at most ${max}`)
      .default(fallback),
  url: (fallback?: string) => {
    const u = z.string().url('must be an absolute URL such as https://host:port/');
    return fallback === undefined ? u.optional() : u.default(fallback);
  },
  bool: (fallback: boolean) =>
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'must be true or false' })
      .transform((v) => v === 'true' || v === '1' || v === 'yes')
      .default(fallback),
  logLevel: () => z.enum(LOG_LEVELS, { message: `must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
  byteSize: (fallback: string) =>
    z
      .string()
      .regex(/^\d+\s*(b|kb|mb)?$/i, 'must be a size such as 100kb or 1mb')
      .default(fallback),
};

/**
 * The connection limits every server of the suite takes (lib/server.ts applies them), spread
 * into each process's schema so the names and defaults are one everywhere.
 */
export const serverLimitSettings = {
  // 5 s: a client sends its headers in one round trip; Node's 60 s let a slow client hold a socket for a minute.
  HEADERS_TIMEOUT_MS: setting.integer(5000, 100, 600_000),
  // 10 s to receive a whole request (headers and body, at most BODY_LIMIT); Node's default is 300 s.
  REQUEST_TIMEOUT_MS: setting.integer(10_000, 100, 3_600_000),
  // 1000: below the usual 1024 open-file limit, so connections are refused before key files and logs run out of descriptors.
  MAX_CONNECTIONS: setting.integer(1000, 1, 1_000_000),
};

/** The parsed connection limits of one server. */
export interface ServerLimits {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  maxConnections: number;
}

/** The limits in lib/server.ts's shape, from a config parsed with serverLimitSettings. */
export const serverLimits = (c: { HEADERS_TIMEOUT_MS: number; REQUEST_TIMEOUT_MS: number; MAX_CONNECTIONS: number }): ServerLimits => ({
  headersTimeoutMs: c.HEADERS_TIMEOUT_MS,
  requestTimeoutMs: c.REQUEST_TIMEOUT_MS,
  maxConnections: c.MAX_CONNECTIONS,
});

/** The limits of a server whose main sets none: the defaults of serverLimitSettings. */
export const DEFAULT_LIMITS: ServerLimits = serverLimits(parseEnv(z.object(serverLimitSettings), {}));
