import { describe, expect, it } from 'vitest';
import { DEFAULT_GROUPS, GROUPS, parseBenchArgs, parseGroups, UsageError } from '../../scripts/bench/args.js';

describe('bench command line', () => {
  it('measures every group but the gateway, RS256, 2 alternating rounds of 5 s after 1 s, 50 connections and LOG_LEVEL=info by default', () => {
    const options = parseBenchArgs([]);
    expect(options.groups).toEqual(['floors', 'factory', 'peers', 'store', 'scenarios']);
    expect(options.groups).toEqual(DEFAULT_GROUPS);
    expect(options).toMatchObject({ alg: 'RS256', rounds: 2, connections: 50, durationS: 5, warmupS: 1, logLevel: 'info', outDir: 'bench-results', workers: undefined, cpuProf: false });
  });

  it('--quick is one round of 2 s after 0.5 s, and explicit --rounds / --duration / --warmup win over it', () => {
    expect(parseBenchArgs(['--quick'])).toMatchObject({ rounds: 1, durationS: 2, warmupS: 0.5 });
    expect(parseBenchArgs(['--quick', '--rounds', '3', '--duration', '3', '--warmup', '1'])).toMatchObject({ rounds: 3, durationS: 3, warmupS: 1 });
  });

  it('--rows keeps table order whatever order the user typed, and --alg takes any case', () => {
    expect(parseGroups('scenarios,floors')).toEqual(['floors', 'scenarios']);
    expect(parseGroups('all')).toEqual(GROUPS);
    expect(parseBenchArgs(['--rows', 'Peers', '--alg', 'eddsa'])).toMatchObject({ groups: ['peers'], alg: 'EdDSA' });
  });

  it('--gateway alone measures the gateway rows only; with --rows it adds them; --rows all includes them', () => {
    expect(parseBenchArgs(['--gateway']).groups).toEqual(['gateway']);
    expect(parseBenchArgs(['--gateway', '--rows', 'store,floors']).groups).toEqual(['floors', 'store', 'gateway']);
    expect(parseBenchArgs(['--rows', 'all']).groups).toEqual(GROUPS);
  });

  it.each([
    [['--rows', 'rs256-issue'], /unknown group "rs256-issue"/],
    [['--rows', ','], /at least one group/],
    [['--connections', '0'], /--connections must be a positive whole number/],
    [['--rounds', '1.5'], /--rounds must be a positive whole number/],
    [['--duration', 'soon'], /--duration must be a positive number/],
    [['--alg', 'HS256'], /--alg must be one of RS256, ES256, EdDSA/],
    [['--log-level', 'loud'], /--log-level must be one of/],
    [['--keys', '10000'], /Unknown option '--keys'/],
  ])('refuses %j with a sentence naming the option', (argv, message) => {
    expect(() => parseBenchArgs(argv)).toThrow(UsageError);
    expect(() => parseBenchArgs(argv)).toThrow(message);
  });
});
