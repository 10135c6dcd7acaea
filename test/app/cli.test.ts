import { describe, expect, it } from 'vitest';
import { runScript } from '../helpers/process.js';

const run = (args: string[]) => runScript('app/main.ts', args, { env: { PORT: '0', HTTPS_PORT: '', HOST: '127.0.0.1' } });

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
