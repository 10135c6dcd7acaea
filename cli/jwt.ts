import { CommandFailed, EXIT, UsageError, helpOf, type Command, type Io } from './command.js';
import { decode, verify } from './inspect.js';
import { explain } from './explain.js';
import { FACTORY_URL_ENV } from './io.js';
import { jwks, rotate } from './keys.js';
import { mint } from './mint.js';
import { exchange, login } from './oidc.js';

/** `jwt <command>`: one command line for the suite's tokens, keys and mesh answers (the entry point is cli/main.ts). */

const COMMANDS: Record<string, Command> = { mint, decode, verify, jwks, rotate, login, exchange, explain };

const HELP = `Usage: jwt <command> [options]     (npm run jwt -- <command>, or npx jwt <command>)

Commands:
${Object.values(COMMANDS)
  .map((c) => `  ${c.spec.name.padEnd(9)}${c.spec.brief}`)
  .join('\n')}

jwt <command> --help prints a command's options. Exit status: 0 ok, 1 refused or failed, 2 bad usage.
`;

/** A connection refused: the usual first stumble is a factory that is not running, or runs elsewhere. */
const nothingListens = (err: CommandFailed) => (err.details?.error as { code?: string; reason?: string } | undefined)?.reason === 'ECONNREFUSED';

/** Runs one command line; resolves with the exit code (never throws). */
export async function main(argv: string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.err : io.out)(HELP);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.err(`jwt: unknown command "${name}"\n\n${HELP}`);
    return EXIT.usage;
  }
  const json = rest.includes('--json');
  try {
    if (rest.includes('--help') || rest.includes('-h')) {
      if (command !== explain) {
        io.out(helpOf(command.spec));
        return EXIT.ok;
      }
    }
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`jwt ${name}: ${err.message}\n(jwt ${name} --help lists the options)\n`);
      return EXIT.usage;
    }
    if (err instanceof CommandFailed) {
      if (json) io.out(`${JSON.stringify({ ok: false, message: err.message, ...err.details }, null, 2)}\n`);
      io.err(`jwt ${name}: ${err.message}${nothingListens(err) ? `\n  nothing listens there: start the factory (npm run jwt-factory), or name where it runs with --factory <url> or ${FACTORY_URL_ENV}=<url> (--issuer <url> for a provider)` : ''}\n`);
      return EXIT.failed;
    }
    io.err(`jwt ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.failed;
  }
}
