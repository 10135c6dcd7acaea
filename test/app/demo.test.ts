import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/process.js';

/** Runs `tsx scripts/demo.ts ...args` to its end; resolves with its exit code and output. */
function runDemo(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(path.join(ROOT, 'node_modules', '.bin', 'tsx'), [path.join(ROOT, 'scripts', 'demo.ts'), ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => resolve({ code, out }));
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('npm run demo', () => {
  it('plays the eight calls with the expected outcomes, exits 0 and leaves no process behind', async () => {
    const { code, out } = await runDemo(['--ports', 'auto']);
    expect(out).toContain('Verdict: all 8 outcomes as expected.');
    expect(code).toBe(0);
    const rows = out.split('\n').filter((l) => /^\| \d /.test(l));
    expect(rows).toHaveLength(8);
    for (const row of rows) expect(row).toMatch(/\| ok \|$/);
    const pids = [...out.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    expect(pids).toHaveLength(4);
    expect(pids.filter(alive)).toEqual([]);
  }, 120_000);
});
