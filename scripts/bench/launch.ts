import { spawn } from 'node:child_process';
import { openSync, closeSync, readSync, readFileSync, readdirSync, fstatSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
  const text = readFileSync(file, 'utf8');
  return text.length > bytes ? `...${text.slice(-bytes)}` : text;
};

/**
 * Starts `node --import tsx <script>` as a real process, the way `npm run jwt-factory` runs it
 * but without the tsx relay process, so that the pid we sample is the server's own.
 * Its stdout and stderr go to `logFile`, as a container runtime would collect them: a pipe read
 * by the bench would put the log cost on the load generator's core and in its memory.
 * Resolves once the process logs `{"msg":"listening","port":N}`.
 */
export function launch(
  script: string,
  options: { env: Record<string, string>; logFile: string; args?: string[]; nodeArgs?: string[]; timeoutMs?: number },
): Promise<Launched> {
  const fd = openSync(options.logFile, 'a');
  const started = performance.now();
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', path.join(ROOT, script), ...(options.args ?? [])], {
    cwd: ROOT,
    // A clean environment: nothing from the caller's shell (NODE_OPTIONS, LOG_LEVEL, WORKERS)
    // changes what is measured; every setting the bench uses is in `env` and in the report.
    env: options.env,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async (graceMs = 10_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(killer);
    return code;
  };
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise<Launched>((resolve, reject) => {
    const reader = openSync(options.logFile, 'r');
    let offset = 0;
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
    const onEarlyExit = (code: number | null, signal: NodeJS.Signals | null) =>
      finish(new LaunchError(`${script} exited (${signal ?? `code ${code}`}) before listening:\n${tail(options.logFile)}`));
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
            child.off('exit', onEarlyExit);
            finish(undefined, {
              pid: child.pid!,
              port: listening.port as number,
              listening,
              startupMs: performance.now() - started,
              logFile: options.logFile,
              stop,
            });
            return;
          }
        }
      }
      if (performance.now() - started > timeoutMs) {
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
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(Number(entry), ppid);
    } catch {
      // The process ended between readdir and read.
    }
  }
  return parents;
}

/**
 * Resident memory (kB) of `pid` and its descendants, from /proc/<pid>/status VmRSS: with
 * WORKERS the cluster's workers are children of the primary and hold most of the memory.
 */
export function treeRssKb(pid: number): { totalKb: number; processes: number } {
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
  let totalKb = 0;
  let processes = 0;
  for (const p of tree) {
    try {
      const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (match) {
        totalKb += Number(match[1]);
        processes += 1;
      }
    } catch {
      // The process ended while we walked the tree.
    }
  }
  return { totalKb, processes };
}

/** A port that is free on 127.0.0.1 right now, for peers that must know each other's port up front. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
