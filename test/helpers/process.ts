import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { childStopper } from '../../lib/process.js';

/** The repository root, from which scripts are started. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');

export interface Started {
  child: ChildProcess;
  /** The first JSON log line whose msg is "listening" (carries `port`, maybe `httpsPort`). */
  listening: Record<string, unknown>;
  port: number;
  /** Everything the process wrote so far (stdout and stderr). */
  output: () => string;
  /** Sends SIGTERM and resolves with the exit code (SIGKILL after `graceMs`). */
  stop: (graceMs?: number) => Promise<number | null>;
}

/**
 * Starts `tsx <script> ...args` as a real process and waits for its "listening" log line.
 * Every main of the suite logs `{"msg":"listening","port":N}` once it accepts connections,
 * so tests can pass PORT=0 and learn the port. Rejects with the output if the process exits
 * or does not listen within `timeoutMs`.
 */
export function startProcess(
  script: string,
  options: { args?: string[]; env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {},
): Promise<Started> {
  const child = spawn(TSX, [path.join(ROOT, script), ...(options.args ?? [])], {
    cwd: options.cwd ?? ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let buffered = '';
  const stop = childStopper(child, 5000);
  return new Promise<Started>((resolve, reject) => {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      // SIGTERM first: tsx relays it to the node process it started, which a SIGKILL of tsx
      // alone would leave running; stop() escalates to SIGKILL after its grace.
      void stop(2000);
      reject(new Error(`${script} did not start listening within ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const onLine = (line: string) => {
      if (!line.startsWith('{')) return;
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (parsed.msg === 'listening' && typeof parsed.port === 'number') {
          clearTimeout(timer);
          resolve({
            child,
            listening: parsed,
            port: parsed.port,
            output: () => out,
            stop,
          });
        }
      } catch {
        /* not JSON: ignore */
      }
    };
    child.stdout!.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      out += text;
      buffered += text;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        onLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited with code ${code} before listening:\n${out}`));
    });
  });
}

export { freePort } from '../../lib/ports.js';

/**
 * Runs `tsx <script> ...args` to its end (a command, not a server) with a clean environment
 * plus `env`; resolves with its exit code and output, whatever the code.
 */
export function runScript(
  script: string,
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(TSX, [path.join(ROOT, script), ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 30_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
