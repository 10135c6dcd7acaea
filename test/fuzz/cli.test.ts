import { describe, expect, it } from 'vitest';
import { runScript } from '../helpers/process.js';

describe('npm run fuzz', () => {
  it('--help prints the usage with every option and exits 0', async () => {
    const { code, stdout } = await runScript('scripts/fuzz.ts', ['--help']);
    expect(code).toBe(0);
    for (const option of ['--requests', '--targets', '--concurrency', '--timeout', '--seed', '--burst']) expect(stdout).toContain(option);
  });

  it.each([
    [['--requests', 'many'], '--requests must be a whole number'],
    [['--targets', 'factory,database'], '--targets takes factory, service, gateway'],
    [['--loud'], "Unknown option '--loud'"],
  ])('%j exits 2 naming the option, before starting anything', async (args, message) => {
    const { code, stderr } = await runScript('scripts/fuzz.ts', args);
    expect(code).toBe(2);
    expect(stderr).toContain(message);
    expect(stderr).toContain('Usage: npm run fuzz');
    expect(stderr).not.toContain('starting the suite');
  });
});
