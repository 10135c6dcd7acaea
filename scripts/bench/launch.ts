import { spawn } from 'node:child_process';
import { openSync, closeSync, readSync, readFileSync, readdirSync, fstatSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { childStopper } from '../../lib/process.js';

/** The repository root: every script of the suite is started from there. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Launched {
  /** The process running the script (node itself, not a tsx relay), so /proc/<pid> is the server. */
  pid: number;
  port: number;
  /** The "listening" log line (the suite's readiness contract). */
  listening: Record<string, unknown>;
  /** Milliseconds from spawn to the "listening" line. */
  startupMs: number;
  logFile: string;
  /** SIGTERM, SIGKILL after `graceMs`; resolves with the exit code. */
  stop: (graceMs?: number) => Promise<number | null>;
}

/** The process exited or never listened: the bench cannot measure anything and exits non-zero. */
export class LaunchError extends Error {
  override readonly name = 'LaunchError';
}

const tail = (file: string, bytes = 4000) => {
  try {
    const text = readFileSync(file, 'utf8');
    return text.length > bytes ? `...${text.slice(-bytes)}` : text;
  } catch {
    return '(no log)';
  }
};

/**
 * Starts `node --import tsx <script>` as a real process, the way `npm run jwt-factory` runs it
 * but without the tsx relay process, so that the pid we sample is the server's own.
 * Its stdout and stderr go to `logFile`, as a container runtime would collect them: a pipe read
 * by the bench would put the log cost on the load generator's core and in its memory.
 * Resolves once the process logs `{"msg":"listening","port":N}`, or, with `readyPort` (for a
 * LOG_LEVEL above info, which hides that line), once `GET /readyz` on that port answers 200.
 */
export function launch(
  script: string,
  options: { env: Record<string, string>; logFile: string; args?: string[]; nodeArgs?: string[]; timeoutMs?: number; readyPort?: number },
): Promise<Launched> {
  const fd = openSync(options.logFile, 'a');
  const startSize = fstatSync(fd).size;
  const started = performance.now();
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', path.join(ROOT, script), ...(options.args ?? [])], {
    cwd: ROOT,
    // A clean environment: nothing from the caller's shell (NODE_OPTIONS, LOG_LEVEL, WORKERS)
    // changes what is measured; every setting the bench uses is in `env` and in the report.
    env: options.env,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const stop = childStopper(child, 10_000);
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise<Launched>((resolve, reject) => {
    const reader = openSync(options.logFile, 'r');
    // An appended log may hold an earlier run's "listening" line: read only what this run writes.
    let offset = startSize;
    let partial = '';
    let done = false;
    const finish = (err?: Error, value?: Launched) => {
      if (done) return;
      done = true;
      clearInterval(poll);
      closeSync(reader);
      if (err) reject(err);
      else resolve(value!);
    };
    const onEarlyExit = (code: number | null, signal: NodeJS.Signals | null) => {
      if (!done) finish(new LaunchError(`${script} exited (${signal ?? `code ${code}`}) before listening:\n${tail(options.logFile)}`));
    };
    const ready = (listening: Record<string, unknown>) => {
      child.off('exit', onEarlyExit);
      finish(undefined, { pid: child.pid!, port: listening.port as number, listening, startupMs: performance.now() - started, logFile: options.logFile, stop });
    };
    let probing = false;
    const probe = (port: number) => {
      probing = true;
      fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) })
        .then((res) => {
          if (res.ok) ready({ msg: 'ready', port });
        })
        .catch(() => undefined)
        .finally(() => {
          probing = false;
        });
    };
    child.once('exit', onEarlyExit);
    // Polling the file every 10 ms bounds the start-up measurement's error to about 10 ms.
    const poll = setInterval(() => {
      const size = fstatSync(reader).size;
      if (size > offset) {
        const chunk = Buffer.alloc(size - offset);
        readSync(reader, chunk, 0, chunk.length, offset);
        offset = size;
        const lines = (partial + chunk.toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          const listening = parseListening(line);
          if (listening) {
            ready(listening);
            return;
          }
        }
      }
      if (options.readyPort !== undefined && !probing) probe(options.readyPort);
      if (!done && performance.now() - started > timeoutMs) {
        child.kill('SIGKILL');
        finish(new LaunchError(`${script} did not log "listening" within ${timeoutMs} ms:\n${tail(options.logFile)}`));
      }
    }, 10);
  });
}

/** The suite's readiness line `{"msg":"listening","port":N}`, or undefined for any other line. */
export function parseListening(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const parsed = JSON.parse(line) as Record<string, unknown>;
    return parsed.msg === 'listening' && typeof parsed.port === 'number' ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** Parent pid of every process, from /proc/<pid>/stat (field 4, after the parenthesised name). */
function parentPids(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProc(Number(entry), 'stat');
    if (stat) parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
  }
  return parents;
}

/** `pid` and its descendants: with WORKERS the cluster's workers are children of the primary. */
export function processTree(pid: number): number[] {
  const parents = parentPids();
  const tree = new Set([pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [child, parent] of parents) {
      if (tree.has(parent) && !tree.has(child)) {
        tree.add(child);
        grew = true;
      }
    }
  }
  return [...tree];
}

/** Reads a /proc file of a process that may have ended meanwhile (undefined then). */
function readProc(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

/** Linux reports process times in clock ticks of 1/100 s (USER_HZ) on every common platform. */
const TICK_MS = 10;

/** CPU time (ms, user + system, every thread) used so far by `pid` alone; undefined once it has ended. */
export function processCpuMs(pid: number): number | undefined {
  const stat = readProc(pid, 'stat');
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat(5): utime and stime; index 0 here is field 3 (state).
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

/** The command name of a process (/proc/<pid>/comm), undefined once it has ended. */
export const processCommand = (pid: number): string | undefined => readProc(pid, 'comm')?.trim();

/**
 * CPU time (ms, user + system, every thread, so the thread pool's signing counts) used so far
 * by `pid` and its descendants, from /proc/<pid>/stat. Unlike requests per second it barely
 * moves when other processes compete for the cores, so fast paths compare well by it.
 */
export function treeCpuMs(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + (processCpuMs(p) ?? 0), 0);
}

