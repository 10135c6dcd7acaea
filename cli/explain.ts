import type { Command } from './command.js';

/**
 * `jwt explain` is `npm run mesh -- explain`: the mesh command runs itself (its parser, its help, its
 * exit codes 0/1/2) with the same arguments, so the two can never answer differently.
 */
export const explain: Command = {
  spec: { name: 'explain', brief: 'what an Istio sidecar answers to a request, and why (npm run mesh -- explain)', summary: "What an Istio sidecar answers to one request, and why: the mesh command's explain (jwt explain --help prints its options).", options: {} },
  async run(argv) {
    process.argv = [process.argv[0]!, 'mesh', 'explain', ...argv];
    // mesh/cli.ts parses process.argv and exits with its own code once it has answered.
    await import('../mesh/cli.js');
    return new Promise<number>(() => undefined);
  },
};
