import { spawn } from 'node:child_process';
import { text } from 'node:stream/consumers';
import path from 'node:path';
import type { CeilingJob, OpResult } from './crypto-ceiling.js';
import { launch, ROOT, treeCpuMs } from './launch.js';
import { runLoad, type LoadResult, type LoadSettings } from './load.js';

/**
 * Measures the HTTP ceiling: the trivial express route in its own process, loaded exactly like
 * the factory's issuance rows (same body, connections, warm-up and duration).
 */
export async function measureHttpCeiling(
  settings: LoadSettings,
  options: { body: string; workers: number | undefined; logFile: string },
): Promise<LoadResult> {
  const server = await launch('scripts/bench/http-ceiling.ts', {
    env: { PORT: '0', HOST: '127.0.0.1', ...(options.workers ? { WORKERS: String(options.workers) } : {}) },
    logFile: options.logFile,
  });
  try {
    return await runLoad({ url: `http://127.0.0.1:${server.port}/ceiling`, method: 'POST', body: options.body }, settings, () => treeCpuMs(server.pid));
  } finally {
    await server.stop();
  }
}

/** Runs the crypto ceiling process for one algorithm and resolves with its sign and verify figures. */
export async function measureCryptoCeiling(job: CeilingJob): Promise<{ sign: OpResult; verify: OpResult }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts/bench/crypto-ceiling.ts')], {
    cwd: ROOT,
    env: {},
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.end(JSON.stringify(job));
  const [stdout, stderr, code] = await Promise.all([
    text(child.stdout),
    text(child.stderr),
    new Promise<number | null>((resolve) => child.once('exit', resolve)),
  ]);
  if (code !== 0) throw new Error(`crypto ceiling for ${job.alg} failed (exit ${code}): ${stderr.slice(-2000)}`);
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { sign: OpResult; verify: OpResult };
}
