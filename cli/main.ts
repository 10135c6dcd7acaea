import { main } from './jwt.js';
import type { Io } from './command.js';

/** The process's own input and output. */
function processIo(): Io {
  return {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    now: () => new Date(),
    env: process.env,
    async stdin() {
      if (process.stdin.isTTY) process.stderr.write('jwt: reading the token from stdin (end with Ctrl-D)\n');
      let text = '';
      for await (const chunk of process.stdin) text += chunk;
      return text;
    },
  };
}

main(process.argv.slice(2), processIo()).then((code) => {
  process.exitCode = code;
});
