import { describe, expect, it } from 'vitest';
import { DEFAULT_GROUPS, GROUPS, parseBenchArgs, parseGroups, UsageError } from '../../scripts/bench/args.js';

describe('bench command line', () => {
  it('measures every group but the gateway, RS256, 2 alternating rounds of 5 s after 1 s, 50 connections and LOG_LEVEL=info by default', () => {
    const options = parseBenchArgs([]);
    expect(options.groups).toEqual(['floors', 'factory', 'peers', 'store', 'scenarios']);
    expect(options.groups).toEqual(DEFAULT_GROUPS);
    expect(options).toMatchObject({ alg: 'RS256', rounds: 2, connections: 50, durationS: 5, warmupS: 1, logLevel: 'info', outDir: 'bench-results', workers: undefined, cpuProf: false, nice: -10 });
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

  it('--nice takes -20..19, 0 leaving the priority as it is', () => {
    expect(parseBenchArgs(['--nice', '0']).nice).toBe(0);
    expect(parseBenchArgs(['--nice=-20']).nice).toBe(-20);
    expect(parseBenchArgs(['--nice', '19']).nice).toBe(19);
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
    [['--nice=-21'], /--nice must be a whole number from -20 to 19/],
    [['--nice', 'high'], /--nice must be a whole number from -20 to 19/],
  ])('refuses %j with a sentence naming the option', (argv, message) => {
    expect(() => parseBenchArgs(argv)).toThrow(UsageError);
    expect(() => parseBenchArgs(argv)).toThrow(message);
  });
});

describe('the bench scheduling priority', () => {
  it('lowering always works and is what the process gets; raising is taken or reported as refused', async () => {
    const { execFileSync } = await import('node:child_process');
    // In a child process, so the test run's own priority is left alone.
    const script = `import { schedulingPriority } from './scripts/bench/rows.ts'; console.log(JSON.stringify([schedulingPriority(5), schedulingPriority(-1)]))`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    const [lowered, raised] = JSON.parse(out.trim().split("\n").pop()!) as [{ asked: number; nice: number }, { asked: number; nice: number }];
    expect(lowered).toEqual({ asked: 5, nice: 5 });
    // From 5 to -1 needs root or CAP_SYS_NICE: either it was granted, or the run kept 5.
    expect(raised.asked).toBe(-1);
    expect([-1, 5]).toContain(raised.nice);
  });
});
