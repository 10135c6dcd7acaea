import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ROW_LABELS, type Algorithm, type RowName } from './args.js';
import type { LoadResult } from './load.js';
import type { OpResult } from './crypto-ceiling.js';
import { round } from './stats.js';

/** The original Node sample's RS256 issuance on this machine (issue 5), the baseline of "5x". */
export const SAMPLE_RS256_ISSUANCE = 760;
/** Targets from issue 5. */
export const TARGETS = { ceilingShare: 0.7, sampleMultiple: 5, p99Ms: 25 } as const;

export interface RowResult {
  row: RowName;
  label: string;
  kind: 'issue' | 'verify' | 'scenario';
  alg?: Algorithm;
  load?: LoadResult;
  /** Throughput as a share of the crypto ceiling of the same operation and algorithm. */
  vsCrypto?: number;
  /** Throughput as a share of the HTTP ceiling. */
  vsHttp?: number;
  /** Why the row was not measured (its part of the suite is missing, or it failed). */
  skipped?: string;
}

export interface Ceilings {
  /** The HTTP ceiling the ratios use (mean req/s of `httpRuns`). */
  http?: LoadResult;
  /** Each HTTP ceiling run: before and after the factory rows. */
  httpRuns?: LoadResult[];
  crypto: Partial<Record<Algorithm, { sign: OpResult; verify: OpResult }>>;
}

export interface TargetResult {
  target: string;
  measured: string;
  required: string;
  /** null when the row it needs was not measured. */
  pass: boolean | null;
  /** For a MISS: how far off, in words. */
  shortBy?: string;
}

/** Fills each row's ratios to the ceilings it can be compared with. */
export function withRatios(rows: RowResult[], ceilings: Ceilings): RowResult[] {
  return rows.map((row) => {
    if (!row.load) return row;
    const crypto = row.alg ? ceilings.crypto[row.alg] : undefined;
    const cryptoRps = row.kind === 'issue' ? crypto?.sign.opsPerSec : row.kind === 'verify' ? crypto?.verify.opsPerSec : undefined;
    return {
      ...row,
      ...(cryptoRps ? { vsCrypto: round(row.load.rps / cryptoRps, 3) } : {}),
      ...(ceilings.http && row.kind !== 'scenario' ? { vsHttp: round(row.load.rps / ceilings.http.rps, 3) } : {}),
    };
  });
}

const pct = (ratio: number) => `${round(ratio * 100, 1)}%`;

function shareTarget(rows: RowResult[], name: RowName, ceiling: 'crypto' | 'http'): TargetResult {
  const row = rows.find((r) => r.row === name);
  const label = ROW_LABELS[name];
  const ratio = ceiling === 'crypto' ? row?.vsCrypto : row?.vsHttp;
  const target = `${label} >= ${pct(TARGETS.ceilingShare)} of the ${ceiling === 'crypto' ? 'crypto' : 'HTTP'} ceiling`;
  const required = `>= ${pct(TARGETS.ceilingShare)}`;
  if (ratio === undefined) return { target, measured: 'not measured', required, pass: null };
  const pass = ratio >= TARGETS.ceilingShare;
  return {
    target,
    measured: `${pct(ratio)} (${row!.load!.rps}/s)`,
    required,
    pass,
    ...(pass ? {} : { shortBy: `${round((TARGETS.ceilingShare - ratio) * 100, 1)} points short` }),
  };
}

/** Judges every target of issue 5 against the measured rows: PASS, MISS, or not measured. */
export function evaluateTargets(rows: RowResult[]): TargetResult[] {
  const results: TargetResult[] = [];
  results.push(shareTarget(rows, 'rs256-issue', 'crypto'));
  const rs = rows.find((r) => r.row === 'rs256-issue')?.load;
  const floor = TARGETS.sampleMultiple * SAMPLE_RS256_ISSUANCE;
  results.push({
    target: `RS256 issuance >= ${TARGETS.sampleMultiple}x the original sample (${SAMPLE_RS256_ISSUANCE}/s)`,
    measured: rs ? `${rs.rps}/s (${round(rs.rps / SAMPLE_RS256_ISSUANCE, 1)}x)` : 'not measured',
    required: `>= ${floor}/s`,
    pass: rs ? rs.rps >= floor : null,
    ...(rs && rs.rps < floor ? { shortBy: `${floor - rs.rps}/s short` } : {}),
  });
  results.push(shareTarget(rows, 'es256-issue', 'http'));
  results.push(shareTarget(rows, 'eddsa-issue', 'http'));
  results.push(shareTarget(rows, 'rs256-verify', 'http'));
  for (const row of rows) {
    if (!row.load) continue;
    const { p99Ms, errors } = row.load;
    results.push({
      target: `${row.label}: p99 < ${TARGETS.p99Ms} ms`,
      measured: `${p99Ms} ms`,
      required: `< ${TARGETS.p99Ms} ms`,
      pass: p99Ms < TARGETS.p99Ms,
      ...(p99Ms < TARGETS.p99Ms ? {} : { shortBy: `${round(p99Ms - TARGETS.p99Ms, 1)} ms over` }),
    });
    results.push({
      target: `${row.label}: no errors`,
      measured: `${errors} of ${row.load.requests}`,
      required: '0',
      pass: errors === 0,
      ...(errors === 0 ? {} : { shortBy: `${errors} errors (${JSON.stringify(row.load.errorDetail)})` }),
    });
  }
  return results;
}

/** Lays out rows of cells as an aligned plain-text table (first column left, others right). */
export function table(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

const num = (v: number | undefined, suffix = '') => (v === undefined || Number.isNaN(v) ? '-' : `${v}${suffix}`);

/** The readable report: ceilings, rows, then one PASS/MISS line per target. */
export function formatRowsReport(rows: RowResult[], ceilings: Ceilings, targets: TargetResult[], context: string[]): string {
  const out: string[] = [...context, ''];
  const ceilingRows: string[][] = [];
  const httpRuns = ceilings.httpRuns ?? (ceilings.http ? [ceilings.http] : []);
  httpRuns.forEach((h, i) => {
    const when = httpRuns.length === 1 ? '' : i === 0 ? ', before' : ', after';
    ceilingRows.push([`HTTP ceiling (express 5 JSON route${when})`, num(h.rps), num(h.p50Ms), num(h.p99Ms), num(h.errors), num(h.serverCpuMsPerRequest)]);
  });
  if (httpRuns.length > 1 && ceilings.http) ceilingRows.push(['HTTP ceiling used for ratios (mean)', num(ceilings.http.rps), '', '', '', '']);
  for (const [alg, c] of Object.entries(ceilings.crypto)) {
    for (const [op, r] of [['sign', c.sign], ['verify', c.verify]] as const) {
      ceilingRows.push([`crypto ceiling ${alg} ${op} (jose)`, num(r.opsPerSec), num(r.p50Ms), num(r.p99Ms), num(r.errors), num(r.cpuMsPerOp)]);
    }
  }
  if (ceilingRows.length > 0) out.push(table(['ceiling', 'ops/s', 'p50 ms', 'p99 ms', 'errors', 'CPU ms/op'], ceilingRows), '');
  out.push(
    table(
      ['row', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'vs crypto', 'vs HTTP', 'CPU ms/req'],
      rows.map((r) =>
        r.load
          ? [r.label, num(r.load.rps), num(r.load.p50Ms), num(r.load.p99Ms), num(r.load.errors), r.vsCrypto === undefined ? '-' : pct(r.vsCrypto), r.vsHttp === undefined ? '-' : pct(r.vsHttp), num(r.load.serverCpuMsPerRequest)]
          : [r.label, `skipped: ${r.skipped ?? 'not measured'}`, '', '', '', '', '', ''],
      ),
    ),
    '',
    formatTargets(targets),
  );
  return out.join('\n');
}

/** One line per target: PASS, MISS (and by how much) or "not measured". */
export function formatTargets(targets: TargetResult[]): string {
  const lines = targets.map((t) => {
    const verdict = t.pass === null ? '----' : t.pass ? 'PASS' : 'MISS';
    return `${verdict}  ${t.target}: ${t.measured} (required ${t.required})${t.shortBy ? `: ${t.shortBy}` : ''}`;
  });
  const missed = targets.filter((t) => t.pass === false).length;
  const passed = targets.filter((t) => t.pass === true).length;
  return ['targets (issue 5):', ...lines, `${passed} PASS, ${missed} MISS, ${targets.length - passed - missed} not measured`].join('\n');
}

/** Writes `bench-<timestamp>.json` and `latest.json` into `outDir`; resolves with the first path. */
export async function writeResults(outDir: string, kind: string, result: object, now = new Date()): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  const file = path.join(outDir, `bench-${kind === 'rows' ? '' : `${kind}-`}${stamp}.json`);
  const json = `${JSON.stringify({ kind, ...result }, null, 2)}\n`;
  await writeFile(file, json);
  await writeFile(path.join(outDir, kind === 'rows' ? 'latest.json' : `latest-${kind}.json`), json);
  return file;
}
