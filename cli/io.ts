import { readFile } from 'node:fs/promises';
import { loadFactoryConfig } from '../jwt-factory/config.js';
import { CommandFailed, UsageError, type Io, type OptionSpec, type Values } from './command.js';

/** How the commands reach the factory: one option, one client. */

/** Where `npm run jwt-factory` listens with no settings: its default PUBLIC_URL (HOST 127.0.0.1, PORT 5555), read from its schema so the two cannot drift. */
export const DEFAULT_FACTORY_URL = loadFactoryConfig({}).PUBLIC_URL;

/** The environment variable that names the factory when --factory is not given. */
export const FACTORY_URL_ENV = 'JWT_FACTORY_URL';

export const FACTORY_OPTION = {
  factory: { type: 'string', value: '<url>', help: `the jwt-factory to talk to (default: $${FACTORY_URL_ENV}, else ${DEFAULT_FACTORY_URL}, where npm run jwt-factory listens)` },
} as const satisfies Record<string, OptionSpec>;

/** The factory's base URL: --factory, else $JWT_FACTORY_URL, else the factory's default address; a URL that is not http(s) is a UsageError naming where it came from. */
export function factoryBase(values: Values, io: Io): string {
  const flag = values.factory as string | undefined;
  const fromEnv = io.env?.[FACTORY_URL_ENV];
  const [raw, source] = flag !== undefined ? [flag, '--factory'] : fromEnv ? [fromEnv, FACTORY_URL_ENV] : [DEFAULT_FACTORY_URL, 'the default factory URL'];
  const url = URL.parse(raw);
  if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new UsageError(`${source} must be an http(s) URL such as ${DEFAULT_FACTORY_URL} (got "${raw}")`);
  return raw;
}

/** Seconds one call to the factory or a provider may take before the command gives up. */
const CALL_TIMEOUT_MS = 10_000;

/** The answer of one HTTP call: status, content type and the parsed body (JSON when it is JSON). */
export interface CallAnswer {
  status: number;
  type: string;
  body: unknown;
}

/** One HTTP call with a time limit; a connection failure is a CommandFailed naming the URL. */
export async function call(url: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<CallAnswer> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: init.method ?? 'GET',
      headers: { accept: 'application/json', ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
    });
  } catch (err) {
    const inner = (err as { cause?: { code?: string; message?: string } }).cause;
    const cause = inner?.code ?? inner?.message ?? (err as Error).message;
    throw new CommandFailed(`cannot reach ${new URL(url).origin} (${cause})`, { error: { code: 'unreachable', url: new URL(url).origin, reason: cause } });
  }
  const type = res.headers.get('content-type') ?? '';
  const text = await res.text();
  let body: unknown = text;
  if (/json/.test(type)) {
    try {
      body = JSON.parse(text);
    } catch {
      /* keep the text */
    }
  }
  return { status: res.status, type, body };
}

/**
 * The factory's `{ error: { code, message } }`, or an OAuth error `{ error, error_description }`
 * (RFC 6749 §5.2, ISSUE_AUTH=client's 401), as a CommandFailed (exit 1) that says status and code.
 */
export function refusal(answer: CallAnswer, what: string): CommandFailed {
  const body = answer.body as { error?: { code?: string; message?: string } | string; error_description?: string } | undefined;
  const error = typeof body?.error === 'string' ? { code: body.error, message: body.error_description ?? '' } : body?.error;
  const text = error ? `${error.code}: ${error.message}` : typeof answer.body === 'string' ? answer.body.slice(0, 200) : 'unexpected answer';
  return new CommandFailed(`${what}: ${answer.status} ${text}`, { status: answer.status, ...(error ? { error } : {}) });
}

/** Joins the factory's base URL and a path (the base may end with a slash). */
export const factoryUrl = (base: string, path: string) => `${base.replace(/\/+$/, '')}${path}`;

/**
 * The token a command works on: the argument, the file, or stdin ("-" or nothing given). A token
 * on the command line lands in shell history, so the file and stdin forms are offered first.
 */
export async function readTokenInput(arg: string | undefined, file: string | undefined, io: Io): Promise<string> {
  if (arg !== undefined && file !== undefined) throw new UsageError('give the token as an argument or with --token-file, not both');
  const text = file !== undefined ? await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`--token-file ${file}: ${err.code ?? err.message}`);
  }) : arg === undefined || arg === '-' ? await io.stdin() : arg;
  const token = text.trim();
  if (token === '') throw new UsageError('no token: pass it as an argument, with --token-file, or on stdin');
  return token;
}

/** Prints `value` as indented JSON. */
export const printJson = (io: Io, value: unknown) => io.out(`${JSON.stringify(value, null, 2)}\n`);
