import { parseArgs } from 'node:util';
import { UsageError } from '../mesh/args.js';

/**
 * The one shape of the `jwt` commands: each is defined once (options with their help), and both
 * node:util parseArgs and `--help` are derived from that definition, so they cannot drift.
 * Exit codes as every command of the suite: 0 ok, 1 refused or failed, 2 usage.
 */

export { UsageError };

export const EXIT = Object.freeze({ ok: 0, failed: 1, usage: 2 });

/** A refusal or failure the user should read (exit 1): a token refused, a factory that says no, a network error. */
export class CommandFailed extends Error {
  override readonly name = 'CommandFailed';
  /** What --json prints for it (e.g. the factory's error body); the message otherwise. */
  readonly details: Record<string, unknown> | undefined;
  constructor(message: string, details?: Record<string, unknown>) {
    super(message);
    this.details = details;
  }
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** The placeholder shown in the help, e.g. "<seconds>". */
  value?: string;
  help: string;
  default?: string;
}

export interface CommandSpec<O extends Record<string, OptionSpec> = Record<string, OptionSpec>> {
  name: string;
  /** One line for the command list. */
  brief: string;
  summary: string;
  /** The positional part of the synopsis, e.g. "[<keyId> | <key.pem>]". */
  args?: string;
  /** How many positionals are accepted at most. */
  maxPositionals?: number;
  options: O;
  /** Extra lines printed after the options (examples, exit codes). */
  notes?: string;
}

/** Parsed flags: strings, repeatable strings, booleans. */
export type Values = Record<string, string | string[] | boolean | undefined>;

/** Options every command takes. */
export const COMMON_OPTIONS = {
  json: { type: 'boolean', help: 'print the result as JSON (for scripts)' },
  help: { type: 'boolean', short: 'h', help: 'this text' },
} as const satisfies Record<string, OptionSpec>;

/** The help text of a command, built from its definition. */
export function helpOf(spec: CommandSpec): string {
  const all: Record<string, OptionSpec> = { ...spec.options, ...COMMON_OPTIONS };
  const rows = Object.entries(all).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${name}${o.type === 'string' ? ` ${o.value ?? '<value>'}` : ''}`;
    return [flag, `${o.help}${o.multiple ? ' (repeatable)' : ''}${o.default !== undefined ? ` (default ${o.default})` : ''}`] as const;
  });
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 2;
  const lines = [`Usage: jwt ${spec.name}${spec.args ? ` ${spec.args}` : ''} [options]`, '', spec.summary, '', ...rows.map(([flag, help]) => `  ${flag.padEnd(width)}${help}`)];
  if (spec.notes) lines.push('', spec.notes);
  lines.push('', 'Exit status: 0 ok, 1 refused or failed, 2 bad usage.');
  return `${lines.join('\n')}\n`;
}

/**
 * gen-jwt.py (argparse) takes single-dash long options (`-iss x`, `-jwks=out.json`); parseArgs
 * would read them as bundles of short flags. A single dash followed by a known long name becomes two.
 */
function acceptSingleDashLongNames(argv: string[], names: ReadonlySet<string>): string[] {
  return argv.map((arg) => {
    const match = /^-([a-z][a-z-]+)(=.*)?$/.exec(arg);
    return match && names.has(match[1]!) ? `-${arg}` : arg;
  });
}

/** Parses a command's argv against its definition; a mistake is a UsageError (exit 2). */
export function parseCommand(spec: CommandSpec, argv: string[]): { values: Values; positionals: string[] } {
  const all: Record<string, OptionSpec> = { ...spec.options, ...COMMON_OPTIONS };
  const options = Object.fromEntries(
    Object.entries(all).map(([name, o]) => [name, { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}), ...(o.default !== undefined ? { default: o.default } : {}) }]),
  );
  let parsed;
  try {
    parsed = parseArgs({ args: acceptSingleDashLongNames(argv, new Set(Object.keys(all))), options, allowPositionals: true, strict: true });
  } catch (err) {
    // parseArgs names the flag ("Unknown option '--audiance'").
    throw new UsageError((err as Error).message);
  }
  if (!parsed.values.help && parsed.positionals.length > (spec.maxPositionals ?? 0)) {
    throw new UsageError(`unexpected argument "${parsed.positionals[spec.maxPositionals ?? 0]}"`);
  }
  return { values: parsed.values as Values, positionals: parsed.positionals };
}

/** A whole number from a flag, or a UsageError naming it. */
export function integerFlag(name: string, raw: string | undefined, min = 0): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < min || !Number.isSafeInteger(Number(raw))) throw new UsageError(`--${name} must be a whole number of at least ${min} (got "${raw}")`);
  return Number(raw);
}

/** What a command writes: stdout for its result, stderr for everything a person reads around it. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** stdin's whole text (a token piped in). */
  stdin(): Promise<string>;
  now(): Date;
  /** The environment the command may read (JWT_FACTORY_URL); absent: none. */
  env?: Readonly<Record<string, string | undefined>>;
}

/** A command: its definition and what it does; resolves with the exit code. */
export interface Command {
  spec: CommandSpec;
  run(argv: string[], io: Io): Promise<number>;
}
