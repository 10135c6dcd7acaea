import { parseArgs } from 'node:util';
import { LOG_LEVELS } from '../../lib/config.js';

/** The algorithms the factory signs with; `--alg` picks the one the floors and the factory rows use. */
export const ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

/**
 * The groups of rows `npm run bench` can measure, in table order: the floors (the same signature
 * with less and less around it), the factory's own endpoints, its peers on the same job, issuance
 * on the PostgreSQL store beside the file store, the suite's end-to-end scenarios, and the
 * gateway (mesh-gateway beside the real Envoy, only with --gateway or --rows).
 */
export const GROUPS = ['floors', 'factory', 'peers', 'store', 'scenarios', 'gateway'] as const;
export type Group = (typeof GROUPS)[number];
/** What `npm run bench` measures without --rows: every group but the gateway, which starts an Envoy. */
export const DEFAULT_GROUPS: readonly Group[] = GROUPS.filter((g) => g !== 'gateway');

export interface BenchOptions {
  groups: readonly Group[];
  alg: Algorithm;
  /** Rounds of the side-by-side rows: each round loads every contender once, in alternating order. */
  rounds: number;
  /** Measured seconds per row and round (after the warm-up). */
  durationS: number;
  /** Warm-up seconds per row and round, whose results are thrown away. */
  warmupS: number;
  /** Concurrent connections (autocannon) and operations in flight (the bare floor). */
  connections: number;
  /** WORKERS for the factory; undefined leaves the factory's default. */
  workers: number | undefined;
  /** LOG_LEVEL for the factory: by default what a user gets, `info`. */
  logLevel: string;
  /** Folder for bench-<timestamp>.json and latest.json. */
  outDir: string;
  /** Runs the factory under `node --cpu-prof` and summarizes where its CPU time went. */
  cpuProf: boolean;
  /** The nice value the bench asks for itself and everything it starts (-20..19; 0 leaves it). */
  nice: number;
  help: boolean;
}

/** A command-line mistake: the message names the option; the bench exits 2 with the usage. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const USAGE = `Usage: npm run bench -- [options]

Measures, in one run on this machine: the floors (the bare signature with jose, node:http + jose,
express 5 + express.json() + jose), the factory's POST /issueToken and POST /verify, the same job
done by the factory's client_credentials and by oidc-provider's (an RS256 JWT access token),
issuance with KEY_STORE=postgres:// beside the file store, and scenarios 1 and 3; with --gateway,
mesh-gateway and the real Envoy in front of an echo upstream. Side-by-side rows are loaded in
rounds of alternating order, so drift hits every contender.

  --quick          1 round of 2 s per row after a 0.5 s warm-up (default 2 rounds of 5 s after 1 s)
  --rows LIST      comma-separated groups: ${GROUPS.join(', ')}, all (default all but gateway)
  --gateway        the gateway rows: mesh-gateway and mesh-gateway --envoy on k8s/istio (alone, or
                   added to --rows)
  --alg ALG        ${ALGORITHMS.join(', ')}: the signature of the floors and the factory rows (default RS256;
                   the peers always sign RS256)
  --rounds N       rounds of the side-by-side rows
  --duration S     measured seconds per row and round
  --warmup S       warm-up seconds per row and round
  --connections N  connections / operations in flight (default 50)
  --workers N      WORKERS for the factory (default: the factory's own default)
  --log-level L    LOG_LEVEL for the factory (default info, as a user runs it)
  --out DIR        results folder (default bench-results)
  --cpu-prof       run the factory under node --cpu-prof (profiles in the results folder) and
                   print where its CPU time went
  --nice=N         the scheduling priority of the bench and every process it starts, -20..19
                   (default -10: ahead of the machine's other work, when allowed: root or
                   CAP_SYS_NICE; otherwise the run goes on at its own and says so; 0 leaves it)
  --help           this text`;

function positiveNumber(name: string, raw: string | undefined, fallback: number, integer: boolean): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new UsageError(`--${name} must be a positive ${integer ? 'whole number' : 'number'} (got "${raw}")`);
  }
  return value;
}

function niceValue(raw: string | undefined): number {
  if (raw === undefined) return -10;
  const value = Number(raw);
  if (!/^-?\d+$/.test(raw.trim()) || value < -20 || value > 19) throw new UsageError(`--nice must be a whole number from -20 to 19 (got "${raw}")`);
  return value;
}

/** Expands `--rows` into groups in table order; unknown names are a UsageError. */
export function parseGroups(list: string): Group[] {
  const wanted = new Set<string>();
  for (const item of list.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    if (item === 'all') GROUPS.forEach((g) => wanted.add(g));
    else if ((GROUPS as readonly string[]).includes(item)) wanted.add(item);
    else throw new UsageError(`--rows: unknown group "${item}" (groups: ${GROUPS.join(', ')}, all)`);
  }
  if (wanted.size === 0) throw new UsageError('--rows needs at least one group');
  return GROUPS.filter((g) => wanted.has(g));
}

/** `--rows` and `--gateway` together: --gateway alone is the gateway rows, with --rows one more group. */
function groupsOf(rows: string | undefined, gateway: boolean): Group[] {
  if (rows === undefined) return gateway ? ['gateway'] : [...DEFAULT_GROUPS];
  const groups = parseGroups(rows);
  return gateway ? GROUPS.filter((g) => g === 'gateway' || groups.includes(g)) : groups;
}

/** Parses the bench's command line (without `node` and the script). */
export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        quick: { type: 'boolean', default: false },
        rows: { type: 'string' },
        alg: { type: 'string' },
        rounds: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        connections: { type: 'string' },
        workers: { type: 'string' },
        'log-level': { type: 'string' },
        out: { type: 'string' },
        'cpu-prof': { type: 'boolean', default: false },
        nice: { type: 'string' },
        gateway: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const quick = parsed.quick ?? false;
  const logLevel = parsed['log-level'] ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  }
  const alg = ALGORITHMS.find((a) => a.toLowerCase() === (parsed.alg ?? 'RS256').toLowerCase());
  if (!alg) throw new UsageError(`--alg must be one of ${ALGORITHMS.join(', ')} (got "${parsed.alg}")`);
  return {
    groups: groupsOf(parsed.rows, parsed.gateway ?? false),
    alg,
    rounds: positiveNumber('rounds', parsed.rounds, quick ? 1 : 2, true),
    durationS: positiveNumber('duration', parsed.duration, quick ? 2 : 5, false),
    warmupS: positiveNumber('warmup', parsed.warmup, quick ? 0.5 : 1, false),
    connections: positiveNumber('connections', parsed.connections, 50, true),
    workers: parsed.workers === undefined ? undefined : positiveNumber('workers', parsed.workers, 1, true),
    logLevel,
    outDir: parsed.out ?? 'bench-results',
    cpuProf: parsed['cpu-prof'] ?? false,
    nice: niceValue(parsed.nice),
    help: parsed.help ?? false,
  };
}
