import type { ChildProcess } from 'node:child_process';

/**
 * The stop function of a child process the suite started: SIGTERM, then SIGKILL after
 * `graceMs`; resolves with the exit code (null after a signal). Create it right after spawn,
 * so the exit is seen even when the child dies before anyone asks it to stop.
 */
export function childStopper(child: ChildProcess, defaultGraceMs: number): (graceMs?: number) => Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return async (graceMs = defaultGraceMs) => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(killer);
    return code;
  };
}
