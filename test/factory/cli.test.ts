import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadFactoryConfig } from '../../jwt-factory/config.js';
import { ROOT } from '../helpers/process.js';

const run = async (args: string[]) => {
  try {
    const { stdout, stderr } = await promisify(execFile)(path.join(ROOT, 'node_modules', '.bin', 'tsx'), [path.join(ROOT, 'jwt-factory', 'main.ts'), ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1' },
      timeout: 20_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
};

describe('npm run jwt-factory -- --help', () => {
  it('prints the usage and every setting with its default, and starts nothing', async () => {
    const { code, stdout } = await run(['--help']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: npm run jwt-factory/);
    for (const [key, value] of Object.entries(loadFactoryConfig({}))) expect(stdout).toMatch(new RegExp(`^  ${key} +${String(value).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`, 'm'));
    expect(stdout).not.toContain('listening');
  });

  it('refuses an unknown argument with exit 2 and says where settings come from', async () => {
    const { code, stderr, stdout } = await run(['--port', '1']);
    expect(code).toBe(2);
    expect(stderr).toBe('jwt-factory: unknown argument "--port": settings come from the environment (npm run jwt-factory -- --help)\n');
    expect(stdout).toBe('');
  });
});
