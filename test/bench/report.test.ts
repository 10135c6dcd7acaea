import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseListening } from '../../scripts/bench/launch.js';
import type { LoadResult } from '../../scripts/bench/load.js';
import { evaluateTargets, formatRowsReport, table, withRatios, writeResults, type Ceilings, type RowResult } from '../../scripts/bench/report.js';
import { evaluateKeyTargets } from '../../scripts/bench/keys-mode.js';
import { evaluateSoak } from '../../scripts/bench/soak.js';
import { percentile, slope } from '../../scripts/bench/stats.js';

const load = (rps: number, p99Ms = 10, errors = 0): LoadResult => ({
  rps,
  p50Ms: 5,
  p99Ms,
  requests: rps * 6,
  warmupRequests: rps,
  errors,
  errorDetail: { non2xx: errors, socketErrors: 0, timeouts: 0 },
  durationS: 6,
  serverCpuMsPerRequest: 0.25,
});
const op = (opsPerSec: number) => ({ opsPerSec, p50Ms: 1, p99Ms: 2, ops: opsPerSec * 6, errors: 0, cpuMsPerOp: 0.3 });
const ceilings: Ceilings = {
  http: load(10_000),
  crypto: { RS256: { sign: op(6000), verify: op(20_000) }, ES256: { sign: op(9000), verify: op(8000) } },
};

describe('bench report', () => {
  const dirs: string[] = [];
  afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it('computes each row as a share of its crypto ceiling and of the HTTP ceiling', () => {
    const [rs, es] = withRatios(
      [
        { row: 'rs256-issue', label: 'RS256 issuance', kind: 'issue', alg: 'RS256', load: load(4500) },
        { row: 'es256-verify', label: 'ES256 verification', kind: 'verify', alg: 'ES256', load: load(6000) },
      ],
      ceilings,
    );
    expect(rs).toMatchObject({ vsCrypto: 0.75, vsHttp: 0.45 });
    expect(es).toMatchObject({ vsCrypto: 0.75, vsHttp: 0.6 });
  });

  it('marks each issue-5 target PASS or MISS with how far off, and unmeasured ones as such', () => {
    const rows = withRatios(
      [
        { row: 'rs256-issue', label: 'RS256 issuance', kind: 'issue', alg: 'RS256', load: load(4500, 30) },
        { row: 'es256-issue', label: 'ES256 issuance', kind: 'issue', alg: 'ES256', load: load(6000, 12, 3) },
      ],
      ceilings,
    );
    const targets = evaluateTargets(rows);
    const byName = (start: string) => targets.find((t) => t.target.startsWith(start))!;
    expect(byName('RS256 issuance >= 70% of the crypto ceiling')).toMatchObject({ pass: true, measured: '75% (4500/s)' });
    expect(byName('RS256 issuance >= 5x')).toMatchObject({ pass: true, required: '>= 3800/s' });
    expect(byName('ES256 issuance >= 70% of the HTTP ceiling')).toMatchObject({ pass: false, shortBy: '10 points short' });
    expect(byName('EdDSA issuance >= 70%')).toMatchObject({ pass: null, measured: 'not measured' });
    expect(byName('RS256 issuance: p99')).toMatchObject({ pass: false, shortBy: '5 ms over' });
    expect(byName('ES256 issuance: no errors')).toMatchObject({ pass: false, measured: '3 of 36000' });
  });

  it('prints the ceilings, the rows with their ratios, skipped rows and one verdict line per target', () => {
    const rows: RowResult[] = withRatios(
      [
        { row: 'rs256-issue', label: 'RS256 issuance', kind: 'issue', alg: 'RS256', load: load(4500) },
        { row: 'scenario1', label: 'scenario 1 end-to-end (TLS)', kind: 'scenario', skipped: 'services not available' },
      ],
      ceilings,
    );
    const text = formatRowsReport(rows, ceilings, evaluateTargets(rows), ['context line']);
    expect(text.split('\n')[0]).toBe('context line');
    expect(text).toMatch(/HTTP ceiling \(express 5 JSON route\)\s+10000\s+5\s+10\s+0\s+0.25$/m);
    expect(text).toMatch(/crypto ceiling RS256 sign \(jose\)\s+6000\s+1\s+2\s+0\s+0.3$/m);
    expect(text).toMatch(/RS256 issuance\s+4500\s+5\s+10\s+0\s+75%\s+45%\s+0.25$/m);
    expect(text).toContain('scenario 1 end-to-end (TLS)  skipped: services not available');
    expect(text).toMatch(/^PASS {2}RS256 issuance >= 70% of the crypto ceiling/m);
    expect(text).toMatch(/^---- {2}ES256 issuance >= 70% of the HTTP ceiling: not measured/m);
    expect(text.split('\n').pop()).toBe('4 PASS, 0 MISS, 3 not measured');
  });

  it('aligns table columns: names left, figures right', () => {
    expect(table(['row', 'req/s'], [['a', '1'], ['longer', '1000']])).toBe(['row     req/s', '------  -----', 'a           1', 'longer   1000'].join('\n'));
  });

  it('writes bench-<timestamp>.json and latest.json with the same content', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-report-'));
    dirs.push(dir);
    const file = await writeResults(dir, 'rows', { rows: [1] }, new Date('2026-11-23T10:00:00.000Z'));
    expect(path.basename(file)).toBe('bench-2026-11-23T10-00-00-000Z.json');
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ kind: 'rows', rows: [1] });
    expect(await readFile(path.join(dir, 'latest.json'), 'utf8')).toBe(await readFile(file, 'utf8'));
    await writeResults(dir, 'soak', { samples: [] }, new Date('2026-11-23T10:00:00.000Z'));
    expect((await readdir(dir)).sort()).toEqual(['bench-2026-11-23T10-00-00-000Z.json', 'bench-soak-2026-11-23T10-00-00-000Z.json', 'latest-soak.json', 'latest.json']);
  });
});

describe('bench helpers', () => {
  it('reads the suite readiness line and nothing else', () => {
    expect(parseListening('{"level":30,"msg":"listening","port":4321}')).toMatchObject({ port: 4321 });
    expect(parseListening('{"msg":"listening"}')).toBeUndefined();
    expect(parseListening('{"msg":"request","port":1}')).toBeUndefined();
    expect(parseListening('listening on 4321')).toBeUndefined();
  });

  it('computes nearest-rank percentiles and a least-squares slope', () => {
    expect(percentile([5, 1, 4, 2, 3], 50)).toBe(3);
    expect(percentile([...Array(100).keys()], 99)).toBe(98);
    expect(slope([{ x: 0, y: 1 }, { x: 1, y: 3 }, { x: 2, y: 5 }])).toBe(2);
  });

  it('judges a soak flat after warm-up as PASS and a steadily growing one as MISS', () => {
    const flat = Array.from({ length: 60 }, (_, i) => ({ atS: i * 5, rssMb: i < 6 ? 60 + i * 5 : 90 + (i % 2) }));
    expect(evaluateSoak(flat, 30)).toMatchObject({ warmupRssMb: 90, targets: [{ pass: true }] });
    const leaking = Array.from({ length: 60 }, (_, i) => ({ atS: i * 5, rssMb: 90 + i }));
    const verdict = evaluateSoak(leaking, 30);
    expect(verdict.slopeMbPerMin).toBe(12);
    expect(verdict.targets[0]!.pass).toBe(false);
  });
});

describe('key-store scale verdicts', () => {
  it('passes a start-up under 5 s and issuance within 90% of the small store, and says by how much a slow start-up misses', () => {
    const small = { issuance: load(1000), jwksOne: load(2000) };
    const pass = evaluateKeyTargets(small, { keys: 10_001, startupMs: 3200, issuance: load(950), jwksOne: load(1900), jwksAllConditional: load(3000) });
    expect(pass.map((t) => t.pass)).toEqual([true, true, true, true, true, true]);
    const miss = evaluateKeyTargets(small, { keys: 10_001, startupMs: 6500, issuance: load(800), jwksOne: load(1900), jwksAllConditional: load(3000, 40) });
    expect(miss[0]).toMatchObject({ pass: false, shortBy: '1500 ms over' });
    expect(miss[1]).toMatchObject({ pass: false, measured: '80% (800/s vs 1000/s)' });
    expect(miss.find((t) => t.target.startsWith('JWKS revalidation'))).toMatchObject({ pass: false, measured: '40 ms, 0 errors' });
  });
});
