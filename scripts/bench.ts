import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseBenchArgs, UsageError, USAGE } from './bench/args.js';
import { LaunchError } from './bench/launch.js';
import { writeResults } from './bench/report.js';
import { runBench, schedulingPriority } from './bench/rows.js';

/**
 * `npm run bench`: the factory beside its floors and its peers, measured in one run on this machine.
 * A missed target is reported, not a crash: the exit code is 0 unless the bench could not run
 * (1: the factory or a helper process failed; 2: a command-line mistake).
 */
async function main(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseBenchArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${err.message}\n\n${USAGE}\n`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const progress = (line: string) => process.stderr.write(`${line}\n`);
  const priority = schedulingPriority(options.nice);
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), 'jwt-bench-'));
  const started = new Date();
  try {
    const { text, ...data } = await runBench(options, tmpDir, progress, priority);
    const file = await writeResults(options.outDir, { startedAt: started.toISOString(), finishedAt: new Date().toISOString(), ...data }, started);
    process.stdout.write(`\n${text}\n\nresults: ${file}\n`);
    return 0;
  } catch (err) {
    if (err instanceof LaunchError) {
      process.stderr.write(`\nbench: could not start a process to measure: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
}

process.exitCode = await main(process.argv.slice(2));
