import { describe, expect, it } from 'vitest';
import { parseBenchArgs, parseRows, ROWS, UsageError } from '../../scripts/bench/args.js';

describe('bench command line', () => {
  it('runs every row with 50 connections, 6 s after a 1.5 s warm-up and LOG_LEVEL=info by default', () => {
    const options = parseBenchArgs([]);
    expect(options.mode).toEqual({ kind: 'rows' });
    expect(options.rows).toEqual(ROWS);
    expect(options).toMatchObject({ connections: 50, durationS: 6, warmupS: 1.5, logLevel: 'info', outDir: 'bench-results', workers: undefined });
  });

  it('--quick shortens each row, and explicit --duration / --warmup win over it', () => {
    expect(parseBenchArgs(['--quick'])).toMatchObject({ durationS: 2, warmupS: 0.5 });
    expect(parseBenchArgs(['--quick', '--duration', '3', '--warmup', '1'])).toMatchObject({ durationS: 3, warmupS: 1 });
  });

  it('--rows expands groups and keeps table order whatever order the user typed', () => {
    expect(parseRows('scenarios,rs256')).toEqual(['rs256-issue', 'rs256-verify', 'scenario1', 'scenario3']);
    expect(parseRows('verify')).toEqual(['rs256-verify', 'es256-verify', 'eddsa-verify']);
    expect(parseBenchArgs(['--rows', 'EdDSA-issue']).rows).toEqual(['eddsa-issue']);
  });

  it('--keys and --soak select their modes', () => {
    expect(parseBenchArgs(['--keys', '10000']).mode).toEqual({ kind: 'keys', count: 10000 });
    expect(parseBenchArgs(['--soak', '300']).mode).toEqual({ kind: 'soak', seconds: 300 });
  });

  it.each([
    [['--rows', 'rs512-issue'], /unknown row "rs512-issue"/],
    [['--rows', ','], /at least one row/],
    [['--connections', '0'], /--connections must be a positive whole number/],
    [['--keys', '1.5'], /--keys must be a positive whole number/],
    [['--duration', 'soon'], /--duration must be a positive number/],
    [['--keys', '10', '--soak', '10'], /separate modes/],
    [['--log-level', 'loud'], /--log-level must be one of/],
    [['--fast'], /Unknown option '--fast'/],
  ])('refuses %j with a sentence naming the option', (argv, message) => {
    expect(() => parseBenchArgs(argv)).toThrow(UsageError);
    expect(() => parseBenchArgs(argv)).toThrow(message);
  });
});
