import { parseArgs } from 'node:util';
import { LOG_LEVELS } from '../../lib/config.js';

/** The algorithms the factory issues with, in the order the table shows them. */
export const ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

/** Every row `npm run bench` can measure, in table order. */
export const ROWS = [
  'rs256-issue',
  'rs256-verify',
  'es256-issue',
  'es256-verify',
  'eddsa-issue',
  'eddsa-verify',
  'scenario1',
  'scenario3',
] as const;
export type RowName = (typeof ROWS)[number];

/** How each row is named in the table and the targets. */
export const ROW_LABELS: Record<RowName, string> = {
  'rs256-issue': 'RS256 issuance',
  'rs256-verify': 'RS256 verification',
  'es256-issue': 'ES256 issuance',
  'es256-verify': 'ES256 verification',
  'eddsa-issue': 'EdDSA issuance',
  'eddsa-verify': 'EdDSA verification',
  scenario1: 'scenario 1 end-to-end (A -> factory, A -> B)',
  scenario3: 'scenario 3 end-to-end (A -> B over TLS)',
};

/** Shorthands accepted by `--rows` besides the row names themselves. */
const GROUPS: Record<string, readonly RowName[]> = {
  all: ROWS,
  factory: ROWS.filter((r) => !r.startsWith('scenario')),
  issue: ROWS.filter((r) => r.endsWith('-issue')),
  verify: ROWS.filter((r) => r.endsWith('-verify')),
  scenarios: ['scenario1', 'scenario3'],
  rs256: ['rs256-issue', 'rs256-verify'],
  es256: ['es256-issue', 'es256-verify'],
  eddsa: ['eddsa-issue', 'eddsa-verify'],
};

export type BenchMode = { kind: 'rows' } | { kind: 'keys'; count: number } | { kind: 'soak'; seconds: number };

export interface BenchOptions {
  mode: BenchMode;
  rows: readonly RowName[];
  /** Measured seconds per row (after the warm-up). */
  durationS: number;
  /** Warm-up seconds per row, whose results are thrown away. */
  warmupS: number;
  /** Concurrent connections (autocannon) and operations in flight (crypto ceiling). */
  connections: number;
  /** WORKERS for the factory and the HTTP ceiling; undefined leaves the factory's default. */
  workers: number | undefined;
  /** LOG_LEVEL for the factory: by default what a user gets, `info`. */
  logLevel: string;
  /** Folder for bench-<timestamp>.json and latest.json. */
  outDir: string;
  /** Runs the factory under `node --cpu-prof` and summarizes where its CPU time went. */
  cpuProf: boolean;
  help: boolean;
}

/** A command-line mistake: the message names the option; the bench exits 2 with the usage. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const USAGE = `Usage: npm run bench -- [options]

  (no mode)        every row: factory issuance and verification per algorithm, scenarios 1 and 3,
                   with the crypto and HTTP ceilings measured in the same run (< 3 minutes)
  --keys N         start-up, issuance and JWKS speed with N keyIds in the store (e.g. 10000)
  --soak S         S seconds at full load, sampling the factory's resident memory (e.g. 300)

  --quick          2 s per row after a 0.5 s warm-up (default 6 s after 1.5 s)
  --rows LIST      comma-separated rows or groups: ${ROWS.join(', ')};
                   groups: ${Object.keys(GROUPS).join(', ')}
  --duration S     measured seconds per row
  --warmup S       warm-up seconds per row
  --connections N  connections / operations in flight (default 50)
  --workers N      WORKERS for the factory and the HTTP ceiling (default: the factory's own default)
  --log-level L    LOG_LEVEL for the factory (default info, as a user runs it)
  --out DIR        results folder (default bench-results)
  --cpu-prof       run the factory under node --cpu-prof (profiles in the results folder) and
                   print where its CPU time went
  --help           this text`;

function positiveNumber(name: string, raw: string | undefined, fallback: number, integer: boolean): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new UsageError(`--${name} must be a positive ${integer ? 'whole number' : 'number'} (got "${raw}")`);
  }
  return value;
}

/** Expands `--rows` into row names in table order; unknown names are a UsageError. */
export function parseRows(list: string): RowName[] {
  const wanted = new Set<RowName>();
  for (const item of list.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    const group = GROUPS[item];
    if (group) group.forEach((r) => wanted.add(r));
    else if ((ROWS as readonly string[]).includes(item)) wanted.add(item as RowName);
    else throw new UsageError(`--rows: unknown row "${item}" (rows: ${ROWS.join(', ')}; groups: ${Object.keys(GROUPS).join(', ')})`);
  }
  if (wanted.size === 0) throw new UsageError('--rows needs at least one row');
  return ROWS.filter((r) => wanted.has(r));
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
        duration: { type: 'string' },
        warmup: { type: 'string' },
        connections: { type: 'string' },
        workers: { type: 'string' },
        'log-level': { type: 'string' },
        keys: { type: 'string' },
        soak: { type: 'string' },
        out: { type: 'string' },
        'cpu-prof': { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (parsed.keys !== undefined && parsed.soak !== undefined) throw new UsageError('--keys and --soak are separate modes: pick one');
  const mode: BenchMode =
    parsed.keys !== undefined
      ? { kind: 'keys', count: positiveNumber('keys', parsed.keys, 0, true) }
      : parsed.soak !== undefined
        ? { kind: 'soak', seconds: positiveNumber('soak', parsed.soak, 0, false) }
        : { kind: 'rows' };
  const quick = parsed.quick ?? false;
  const logLevel = parsed['log-level'] ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  }
  return {
    mode,
    rows: parsed.rows === undefined ? ROWS : parseRows(parsed.rows),
    durationS: positiveNumber('duration', parsed.duration, quick ? 2 : 6, false),
    warmupS: positiveNumber('warmup', parsed.warmup, quick ? 0.5 : 1.5, false),
    connections: positiveNumber('connections', parsed.connections, 50, true),
    workers: parsed.workers === undefined ? undefined : positiveNumber('workers', parsed.workers, 1, true),
    logLevel,
    outDir: parsed.out ?? 'bench-results',
    cpuProf: parsed['cpu-prof'] ?? false,
    help: parsed.help ?? false,
  };
}
