import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Group } from './args.js';
import type { LoadResult } from './load.js';
import { round } from './stats.js';

/**
 * The report: one table of every row, the ratios that compare them, and the verdicts of the
 * goals. Every ratio divides two figures of the same run; no figure comes from elsewhere.
 */

/**
 * Goals: issuance and verification within 1.1x of the framework floor; oidc-provider costing >= 1.5x
 * the factory on the same job; issuance on the PostgreSQL store within 10% of the file store's.
 */
export const GOALS = { vsFrameworkFloor: 1.1, peerCpuMultiple: 1.5, storeVsFile: 1.1 } as const;

/** Row ids the ratios refer to. */
export const ROW = {
  bareIssue: 'bare-issue',
  bareVerify: 'bare-verify',
  httpIssue: 'http-issue',
  httpVerify: 'http-verify',
  expressIssue: 'express-issue',
  expressVerify: 'express-verify',
  factoryIssue: 'factory-issue',
  factoryVerify: 'factory-verify',
  factoryClientCredentials: 'factory-cc',
  oidcProvider: 'oidc-provider-cc',
  storePostgres: 'store-postgres',
} as const;

/** The peer comparisons the report prints, numerator over denominator: the same job first, then against /issueToken. */
export const RATIOS: ReadonlyArray<readonly [string, string]> = [
  [ROW.oidcProvider, ROW.factoryClientCredentials],
  [ROW.oidcProvider, ROW.factoryIssue],
  [ROW.factoryClientCredentials, ROW.factoryIssue],
  [ROW.storePostgres, ROW.factoryIssue],
];

export interface RowResult {
  id: string;
  label: string;
  group: Group;
  op: 'issue' | 'verify' | 'scenario' | 'proxy';
  load?: LoadResult;
  /** Why the row was not measured (its part of the suite is missing, or it failed). */
  skipped?: string;
}

export interface Verdict {
  goal: string;
  measured: string;
  pass: boolean | null;
}

const cpuOf = (rows: RowResult[], id: string) => rows.find((r) => r.id === id)?.load?.serverCpuMsPerRequest;
const cpuOfRow = (l: LoadResult) => l.serverCpuMsPerRequest;

/** A figure of row `a` over the same figure of row `b`, rounded to 2 decimals; undefined when either is missing. */
export function ratioOf(rows: RowResult[], a: string, b: string, figure: (l: LoadResult) => number | undefined): number | undefined {
  const x = rows.find((r) => r.id === a)?.load;
  const y = rows.find((r) => r.id === b)?.load;
  const [fx, fy] = [x && figure(x), y && figure(y)];
  return fx !== undefined && fy ? round(fx / fy, 2) : undefined;
}

/** One line per measured pair of RATIOS: CPU per token and throughput of one over the other. */
export function ratioLines(rows: RowResult[]): string[] {
  const label = (id: string) => rows.find((r) => r.id === id)?.label ?? id;
  return RATIOS.flatMap(([a, b]) => {
    const cpu = ratioOf(rows, a, b, cpuOfRow);
    const rps = ratioOf(rows, a, b, (l) => l.rps);
    return cpu === undefined || rps === undefined ? [] : [`ratio  ${label(a)} / ${label(b)}: ${cpu}x the CPU per token, ${rps}x the req/s`];
  });
}

/** CPU per request of `row` divided by the framework floor's for the same operation (undefined when either is missing). */
export function vsFrameworkFloor(rows: RowResult[], row: RowResult): number | undefined {
  if ((row.op !== 'issue' && row.op !== 'verify') || row.group === 'floors') return undefined;
  const floor = cpuOf(rows, row.op === 'issue' ? ROW.expressIssue : ROW.expressVerify);
  const cpu = row.load?.serverCpuMsPerRequest;
  return floor && cpu !== undefined ? round(cpu / floor, 2) : undefined;
}

/** Microseconds of CPU per request beyond the bare signature (or verification) itself. */
export function beyondSignatureUs(rows: RowResult[], row: RowResult): number | undefined {
  if ((row.op !== 'issue' && row.op !== 'verify') || row.id.startsWith('bare-')) return undefined;
  const bare = cpuOf(rows, row.op === 'issue' ? ROW.bareIssue : ROW.bareVerify);
  const cpu = row.load?.serverCpuMsPerRequest;
  return bare !== undefined && cpu !== undefined ? Math.round((cpu - bare) * 1000) : undefined;
}

/** Judges the goals against the measured rows: PASS, MISS, or not measured (null). */
export function evaluateGoals(rows: RowResult[]): Verdict[] {
  const verdicts: Verdict[] = [];
  // A goal is judged on the rows this run measured: --gateway alone has no factory rows.
  for (const row of [ROW.factoryIssue, ROW.factoryVerify].flatMap((id) => rows.filter((r) => r.id === id))) {
    const ratio = vsFrameworkFloor(rows, row);
    verdicts.push({
      goal: `${row.label}: CPU per request <= ${GOALS.vsFrameworkFloor}x the framework floor`,
      measured: ratio === undefined ? 'not measured' : `${ratio}x`,
      pass: ratio === undefined ? null : ratio <= GOALS.vsFrameworkFloor,
    });
  }
  const peer = rows.find((r) => r.id === ROW.oidcProvider);
  const sameJob = rows.find((r) => r.id === ROW.factoryClientCredentials);
  if (peer) {
    const multiple = ratioOf(rows, ROW.oidcProvider, ROW.factoryClientCredentials, cpuOfRow);
    const missing = [peer, sameJob].find((r) => r?.skipped);
    verdicts.push({
      goal: `${peer.label}: CPU per token >= ${GOALS.peerCpuMultiple}x ${sameJob?.label ?? ROW.factoryClientCredentials} (the same job)`,
      measured: multiple === undefined ? `not measured${missing ? ` (${missing.skipped})` : ''}` : `${multiple}x`,
      pass: multiple === undefined ? null : multiple >= GOALS.peerCpuMultiple,
    });
  }
  const store = rows.find((r) => r.id === ROW.storePostgres);
  if (store) {
    const ratio = ratioOf(rows, ROW.storePostgres, ROW.factoryIssue, cpuOfRow);
    verdicts.push({
      goal: `${store.label}: CPU per token <= ${GOALS.storeVsFile}x the file store's`,
      measured: ratio === undefined ? `not measured${store.skipped ? ` (${store.skipped})` : ''}` : `${ratio}x`,
      pass: ratio === undefined ? null : ratio <= GOALS.storeVsFile,
    });
  }
  const measured = rows.filter((r) => r.load);
  const failing = measured.filter((r) => r.load!.errors > 0);
  verdicts.push({
    goal: 'no errors in any row',
    measured: failing.length === 0 ? `0 in ${measured.length} rows` : failing.map((r) => `${r.label}: ${r.load!.errors} (${JSON.stringify(r.load!.errorDetail)})`).join('; '),
    pass: measured.length === 0 ? null : failing.length === 0,
  });
  return verdicts;
}

/** Lays out rows of cells as an aligned plain-text table (first column left, others right). */
export function table(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

const num = (v: number | undefined, suffix = '') => (v === undefined || Number.isNaN(v) ? '-' : `${v}${suffix}`);

/** The readable report: context lines, the table, then one PASS / MISS / ---- line per goal. */
export function formatReport(rows: RowResult[], verdicts: Verdict[], context: string[]): string {
  const body = rows.map((r) => {
    if (!r.load) return [r.label, 'skipped', '', '', '', '', '', ''];
    const cpuUs = r.load.serverCpuMsPerRequest === undefined ? undefined : Math.round(r.load.serverCpuMsPerRequest * 1000);
    const vs = vsFrameworkFloor(rows, r);
    return [r.label, num(r.load.rps), num(r.load.p50Ms), num(r.load.p99Ms), num(r.load.errors), num(cpuUs), vs === undefined ? '-' : `${vs}x`, num(beyondSignatureUs(rows, r))];
  });
  const lines = verdicts.map((v) => `${v.pass === null ? '----' : v.pass ? 'PASS' : 'MISS'}  ${v.goal}: ${v.measured}`);
  const skipped = rows.filter((r) => !r.load).map((r) => `skipped: ${r.label}: ${r.skipped ?? 'not measured'}`);
  return [
    ...context,
    '',
    table(['row', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'CPU µs/req', 'vs framework floor', 'µs beyond the signature'], body),
    ...skipped,
    ...(ratioLines(rows).length > 0 ? ['', ...ratioLines(rows)] : []),
    '',
    ...lines,
  ].join('\n');
}

/** Writes `bench-<timestamp>.json` and `latest.json` into `outDir`; resolves with the first path. */
export async function writeResults(outDir: string, result: object, now = new Date()): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const file = path.join(outDir, `bench-${now.toISOString().replace(/[:.]/g, '-')}.json`);
  const json = `${JSON.stringify(result, null, 2)}\n`;
  await writeFile(file, json);
  await writeFile(path.join(outDir, 'latest.json'), json);
  return file;
}
