import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/process.js';

const run = async (args: string[]) => {
  try {
    const { stdout, stderr } = await promisify(execFile)(path.join(ROOT, 'node_modules', '.bin', 'tsx'), [path.join(ROOT, 'app', 'main.ts'), ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', PORT: '0', HTTPS_PORT: '', HOST: '127.0.0.1' },
      timeout: 20_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
};

describe('npm run servicea|serviceb|servicec -- --help', () => {
  it('prints the usage for a service and starts nothing', async () => {
    const { code, stdout } = await run(['serviceb', '--help']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: npm run servicea \| npm run serviceb \| npm run servicec/);
    expect(stdout).toContain('app/.<service>.env');
    expect(stdout).not.toContain('listening');
  });

  it('refuses an unknown argument (exit 2) and an unknown service (exit 1), each in one sentence', async () => {
    const unknownArg = await run(['servicea', '--port', '1']);
    expect(unknownArg.code).toBe(2);
    expect(unknownArg.stderr).toBe('servicea: unknown argument "--port": settings come from app/.servicea.env and the environment (--help)\n');
    const unknownService = await run(['serviced']);
    expect(unknownService.code).toBe(1);
    expect(unknownService.stderr).toBe('serviced: unknown service "serviced": it must be one of servicea, serviceb, servicec\n');
    const none = await run([]);
    expect(none.code).toBe(1);
    expect(none.stderr).toBe('app: which service? Name one of servicea, serviceb, servicec (npm run servicea)\n');
  });
});
