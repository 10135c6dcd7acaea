import { describe, expect, it } from 'vitest';
import { loadFactoryConfig } from '../../jwt-factory/config.js';
import { runScript } from '../helpers/process.js';

const run = (args: string[]) => runScript('jwt-factory/main.ts', args, { env: { PORT: '0', HOST: '127.0.0.1' } });

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
