import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseListening } from '../../scripts/bench/launch.js';
import { combineRounds, roundOrder, type LoadResult } from '../../scripts/bench/load.js';
import { gatewayLines } from '../../scripts/bench/gateway.js';
import { beyondSignatureUs, evaluateGoals, formatReport, ratioLines, table, vsFrameworkFloor, writeResults, type RowResult } from '../../scripts/bench/report.js';
import { percentile } from '../../scripts/bench/stats.js';

const load = (rps: number, cpuMs: number, errors = 0): LoadResult => ({
  rps,
  p50Ms: 5,
  p99Ms: 10,
  requests: rps * 5,
  warmupRequests: rps,
  errors,
  errorDetail: { non2xx: errors, socketErrors: 0, timeouts: 0 },
  durationS: 5,
  serverCpuMsPerRequest: cpuMs,
});
const row = (id: string, group: RowResult['group'], op: RowResult['op'], l?: LoadResult, label = id): RowResult => ({ id, label, group, op, ...(l ? { load: l } : { skipped: 'not here' }) });
const rows: RowResult[] = [
  row('bare-issue', 'floors', 'issue', load(7000, 0.29)),
  row('express-issue', 'floors', 'issue', load(3300, 0.48)),
  row('bare-verify', 'floors', 'verify', load(30000, 0.05)),
  row('express-verify', 'floors', 'verify', load(8000, 0.12)),
  row('factory-issue', 'factory', 'issue', load(3000, 0.5), 'jwt-factory POST /issueToken (RS256)'),
  row('factory-verify', 'factory', 'verify', load(6000, 0.15), 'jwt-factory POST /verify (RS256)'),
  row('oidc-provider-cc', 'peers', 'issue', load(2000, 0.8), 'oidc-provider 9 client_credentials (RS256 JWT)'),
  row('factory-cc', 'peers', 'issue', undefined, 'jwt-factory client_credentials (RS256 JWT)'),
];

describe('bench report', () => {
  const dirs: string[] = [];
  afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it('divides CPU per request by the framework floor of the same operation, and subtracts the bare signature', () => {
    const byId = (id: string) => rows.find((r) => r.id === id)!;
    expect(vsFrameworkFloor(rows, byId('factory-issue'))).toBe(1.04);
    expect(vsFrameworkFloor(rows, byId('factory-verify'))).toBe(1.25);
    expect(vsFrameworkFloor(rows, byId('oidc-provider-cc'))).toBe(1.67);
    expect(vsFrameworkFloor(rows, byId('express-issue'))).toBeUndefined();
    expect(beyondSignatureUs(rows, byId('factory-issue'))).toBe(210);
    expect(beyondSignatureUs(rows, byId('express-verify'))).toBe(70);
    expect(beyondSignatureUs(rows, byId('bare-issue'))).toBeUndefined();
  });

  it('judges each goal PASS, MISS or not measured, with the figure it read', () => {
    const verdicts = evaluateGoals(rows);
    expect(verdicts).toEqual([
      { goal: 'jwt-factory POST /issueToken (RS256): CPU per request <= 1.1x the framework floor', measured: '1.04x', pass: true },
      { goal: 'jwt-factory POST /verify (RS256): CPU per request <= 1.1x the framework floor', measured: '1.25x', pass: false },
      { goal: 'oidc-provider 9 client_credentials (RS256 JWT): CPU per token >= 1.5x jwt-factory client_credentials (RS256 JWT) (the same job)', measured: 'not measured (not here)', pass: null },
      { goal: 'no errors in any row', measured: '0 in 7 rows', pass: true },
    ]);
    const sameJob = evaluateGoals([...rows.slice(0, -1), row('factory-cc', 'peers', 'issue', load(2500, 0.6), 'jwt-factory client_credentials (RS256 JWT)')]);
    expect(sameJob[2]).toEqual({ goal: 'oidc-provider 9 client_credentials (RS256 JWT): CPU per token >= 1.5x jwt-factory client_credentials (RS256 JWT) (the same job)', measured: '1.33x', pass: false });
    const failing = evaluateGoals([row('factory-issue', 'factory', 'issue', load(10, 0.5, 3), 'issue')]);
    expect(failing.at(-1)).toEqual({ goal: 'no errors in any row', measured: 'issue: 3 ({"non2xx":3,"socketErrors":0,"timeouts":0})', pass: false });
    expect(failing[0]).toMatchObject({ measured: 'not measured', pass: null });
  });

  it('prints context, one line per row with µs of CPU and its ratios, skipped rows with the reason, then the verdicts', () => {
    const text = formatReport(rows, evaluateGoals(rows), ['context line']);
    expect(text.split('\n')[0]).toBe('context line');
    expect(text).toMatch(/^jwt-factory POST \/issueToken \(RS256\) +3000 +5 +10 +0 +500 +1\.04x +210$/m);
    expect(text).toMatch(/^bare-issue +7000 +5 +10 +0 +290 +- +-$/m);
    expect(text).toMatch(/^jwt-factory client_credentials \(RS256 JWT\) +skipped$/m);
    expect(text).toMatch(/^skipped: jwt-factory client_credentials \(RS256 JWT\): not here$/m);
    expect(text).toMatch(/^MISS {2}jwt-factory POST \/verify \(RS256\): CPU per request <= 1\.1x the framework floor: 1\.25x$/m);
    expect(text).toMatch(/^---- {2}oidc-provider 9 client_credentials \(RS256 JWT\): CPU per token >= 1\.5x jwt-factory client_credentials/m);
  });

  it('prints the peer ratios that were measured: CPU per token and req/s of one row over the other', () => {
    const measured = [...rows.slice(0, -1), row('factory-cc', 'peers', 'issue', load(2500, 0.6), 'factory cc')];
    expect(ratioLines(measured)).toEqual([
      'ratio  oidc-provider 9 client_credentials (RS256 JWT) / factory cc: 1.33x the CPU per token, 0.8x the req/s',
      'ratio  oidc-provider 9 client_credentials (RS256 JWT) / jwt-factory POST /issueToken (RS256): 1.6x the CPU per token, 0.67x the req/s',
      'ratio  factory cc / jwt-factory POST /issueToken (RS256): 1.2x the CPU per token, 0.83x the req/s',
    ]);
    expect(ratioLines(rows)).toEqual(['ratio  oidc-provider 9 client_credentials (RS256 JWT) / jwt-factory POST /issueToken (RS256): 1.6x the CPU per token, 0.67x the req/s']);
    expect(formatReport(measured, [], [])).toContain('ratio  factory cc / jwt-factory POST /issueToken (RS256): 1.2x');
  });

  it('judges issuance on the PostgreSQL store against the file store: at most 1.1x its CPU per token', () => {
    const store = (cpu: number) => evaluateGoals([row('factory-issue', 'factory', 'issue', load(3000, 0.5)), row('store-postgres', 'store', 'issue', load(2900, cpu), 'pg')]);
    expect(store(0.54).find((v) => v.goal.startsWith('pg'))).toEqual({ goal: "pg: CPU per token <= 1.1x the file store's", measured: '1.08x', pass: true });
    expect(store(0.6).find((v) => v.goal.startsWith('pg'))).toMatchObject({ measured: '1.2x', pass: false });
    const skipped = evaluateGoals([row('factory-issue', 'factory', 'issue', load(3000, 0.5)), row('store-postgres', 'store', 'issue', undefined, 'pg')]);
    expect(skipped.find((v) => v.goal.startsWith('pg'))).toMatchObject({ measured: 'not measured (not here)', pass: null });
  });

  it('says what each gateway adds to the direct call: p50 and p99 differences and its own CPU per request', () => {
    const direct = { ...load(10000, 0.02), p50Ms: 1.5, p99Ms: 4 };
    const engine = { ...load(1000, 0.9), p50Ms: 40, p99Ms: 90.25 };
    const envoy = { ...load(5000, 0.19), p50Ms: 8, p99Ms: 3 };
    const lines = gatewayLines([row('gateway-direct', 'gateway', 'proxy', direct), row('gateway-engine', 'gateway', 'proxy', engine, 'engine'), row('gateway-envoy', 'gateway', 'proxy', envoy, 'envoy')]);
    expect(lines).toEqual(['added  engine: p50 +38.5 ms, p99 +86.25 ms, its CPU per request 900 µs', 'added  envoy: p50 +6.5 ms, p99 -1 ms, its CPU per request 190 µs']);
    expect(gatewayLines([row('gateway-engine', 'gateway', 'proxy', engine)])).toEqual([]);
    expect(vsFrameworkFloor(rows, row('gateway-engine', 'gateway', 'proxy', engine))).toBeUndefined();
    // A run of the gateway alone judges no factory goal it did not measure.
    expect(evaluateGoals([row('gateway-engine', 'gateway', 'proxy', engine)]).map((v) => v.goal)).toEqual(['no errors in any row']);
  });

  it('aligns table columns: names left, figures right', () => {
    expect(table(['row', 'req/s'], [['a', '1'], ['longer', '1000']])).toBe(['row     req/s', '------  -----', 'a           1', 'longer   1000'].join('\n'));
  });

  it('writes bench-<timestamp>.json and latest.json with the same content', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-report-'));
    dirs.push(dir);
    const file = await writeResults(dir, { rows: [1] }, new Date('2026-11-23T10:00:00.000Z'));
    expect(path.basename(file)).toBe('bench-2026-11-23T10-00-00-000Z.json');
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ rows: [1] });
    expect(await readFile(path.join(dir, 'latest.json'), 'utf8')).toBe(await readFile(file, 'utf8'));
    expect((await readdir(dir)).sort()).toEqual(['bench-2026-11-23T10-00-00-000Z.json', 'latest.json']);
  });
});

describe('bench rounds', () => {
  it('alternates the order of the contenders from one round to the next', () => {
    expect([0, 1, 2].map((r) => roundOrder(['a', 'b', 'c'], r).join(''))).toEqual(['abc', 'cba', 'abc']);
  });

  it('combines rounds: throughput over all seconds, CPU over all requests, errors summed, percentiles averaged', () => {
    const a = { ...load(1000, 0.4), p99Ms: 10 };
    const b = { ...load(3000, 0.2, 2), p99Ms: 30 };
    expect(combineRounds([a, b])).toEqual({
      rps: 2000,
      p50Ms: 5,
      p99Ms: 20,
      requests: 20000,
      warmupRequests: 4000,
      errors: 2,
      errorDetail: { non2xx: 2, socketErrors: 0, timeouts: 0 },
      durationS: 10,
      serverCpuMsPerRequest: 0.25,
    });
    expect(combineRounds([a])).toBe(a);
    expect(() => combineRounds([])).toThrow(/at least one round/);
  });
});

describe('bench helpers', () => {
  it('reads the suite readiness line and nothing else', () => {
    expect(parseListening('{"level":30,"msg":"listening","port":4321}')).toMatchObject({ port: 4321 });
    expect(parseListening('{"msg":"listening"}')).toBeUndefined();
    expect(parseListening('{"msg":"request","port":1}')).toBeUndefined();
    expect(parseListening('listening on 4321')).toBeUndefined();
  });

  it('computes nearest-rank percentiles', () => {
    expect(percentile([5, 1, 4, 2, 3], 50)).toBe(3);
    expect(percentile([...Array(100).keys()], 99)).toBe(98);
  });
});
