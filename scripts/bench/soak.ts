import type { BenchOptions } from './args.js';
import { ALGORITHMS } from './args.js';
import { benchKeyId, issueTarget, prepareKey, startFactory, tempPaths, verifyTarget } from './factory.js';
import { treeCpuMs, treeRssKb } from './launch.js';
import { runLoad } from './load.js';
import { machineContext } from './rows.js';
import { formatTargets, table, type TargetResult } from './report.js';
import { round, slope } from './stats.js';

/** Seconds between two resident-memory samples. */
export const SAMPLE_EVERY_S = 5;

export interface RssSample {
  atS: number;
  rssMb: number;
}

/** Warm-up: the first 20% of the run, at least 20 s and at most 60 s (JIT, pools, caches filling up). */
export const warmupSeconds = (totalS: number) => Math.min(60, Math.max(20, totalS * 0.2));

/**
 * Judges "no growth in resident memory beyond warm-up": the end (mean of the last three
 * samples) stays within max(10 MB, 10%) of the warm-up figure, and so does the growth the
 * post-warm-up slope projects over the measured span.
 */
export function evaluateSoak(samples: readonly RssSample[], warmupS: number) {
  const after = samples.filter((s) => s.atS >= warmupS);
  const warmupRss = after[0]?.rssMb ?? Number.NaN;
  const last = after.slice(-3);
  const endRss = last.reduce((s, x) => s + x.rssMb, 0) / Math.max(1, last.length);
  const perMinute = slope(after.map((s) => ({ x: s.atS / 60, y: s.rssMb })));
  const spanMin = after.length > 1 ? (after[after.length - 1]!.atS - after[0]!.atS) / 60 : 0;
  const allowance = Math.max(10, warmupRss * 0.1);
  const growth = endRss - warmupRss;
  const projected = perMinute * spanMin;
  const targets: TargetResult[] = [
    {
      target: 'resident memory after warm-up does not grow',
      measured: `warm-up ${round(warmupRss)} MB, end ${round(endRss)} MB (${growth >= 0 ? '+' : ''}${round(growth)} MB), slope ${round(perMinute, 2)} MB/min`,
      required: `end and slope x ${round(spanMin, 1)} min within ${round(allowance)} MB`,
      pass: after.length >= 2 && growth <= allowance && projected <= allowance,
    },
  ];
  return { warmupRssMb: round(warmupRss), endRssMb: round(endRss), growthMb: round(growth), slopeMbPerMin: round(perMinute, 3), peakRssMb: round(Math.max(...samples.map((s) => s.rssMb))), targets };
}

/**
 * `--soak S`: S seconds of full load (issuance and verification with every algorithm, JWKS)
 * while sampling the factory's resident memory from /proc every few seconds.
 */
export async function runSoak(options: BenchOptions & { mode: { kind: 'soak'; seconds: number } }, tmpDir: string, progress: (line: string) => void) {
  const totalS = options.mode.seconds;
  const paths = tempPaths(tmpDir);
  const factory = await startFactory({ keysDir: paths.keysDir, logLevel: options.logLevel, workers: options.workers, logFile: paths.factoryLog });
  const baseUrl = `http://127.0.0.1:${factory.port}`;
  const samples: RssSample[] = [];
  try {
    const keys = [];
    for (const alg of ALGORITHMS) keys.push(await prepareKey(baseUrl, benchKeyId(alg), alg));
    // Each connection cycles through every operation, so every code path runs for the whole soak.
    const requests = keys.flatMap((k) => [issueTarget(baseUrl, k), verifyTarget(baseUrl, k)]).map((t) => ({
      method: t.method,
      path: new URL(t.url).pathname,
      body: t.body,
      headers: { 'content-type': 'application/json' },
    }));
    requests.push({ method: 'GET', path: '/.well-known/jwks.json', body: undefined, headers: { 'content-type': 'application/json' } });
    const started = performance.now();
    const sample = () => {
      const atS = round((performance.now() - started) / 1000, 1);
      const rssMb = round(treeRssKb(factory.pid).totalKb / 1024);
      samples.push({ atS, rssMb });
      progress(`  ${atS} s: ${rssMb} MB resident`);
    };
    progress(`soak: ${totalS} s at full load (${options.connections} connections), resident memory every ${SAMPLE_EVERY_S} s`);
    sample();
    const timer = setInterval(sample, SAMPLE_EVERY_S * 1000);
    const load = await runLoad({ url: baseUrl, requests }, { connections: options.connections, durationS: totalS, warmupS: 0 }, () => treeCpuMs(factory.pid)).finally(() => clearInterval(timer));
    sample();
    const warmupS = warmupSeconds(totalS);
    const verdict = evaluateSoak(samples, warmupS);
    const noErrors: TargetResult = { target: 'no errors during the soak', measured: `${load.errors} of ${load.requests}`, required: '0', pass: load.errors === 0 };
    const targets = [...verdict.targets, noErrors];
    const machine = machineContext();
    const text = [
      `jwt-factory benchmark, --soak ${totalS}: ${machine.cpus} x ${machine.cpuModel}, Node ${machine.node}`,
      `load: autocannon, ${options.connections} connections cycling issuance + verification (${ALGORITHMS.join(', ')}) + JWKS; factory LOG_LEVEL=${options.logLevel}, WORKERS=${options.workers ?? 'factory default'}`,
      `throughput ${load.rps} req/s, p50 ${load.p50Ms} ms, p99 ${load.p99Ms} ms, ${load.requests} requests; warm-up = first ${warmupS} s`,
      '',
      table(['', 'MB resident'], [
        ['warm-up (first sample after it)', String(verdict.warmupRssMb)],
        ['end (mean of the last 3 samples)', String(verdict.endRssMb)],
        ['peak', String(verdict.peakRssMb)],
        ['slope after warm-up (MB/min)', String(verdict.slopeMbPerMin)],
      ]),
      '',
      formatTargets(targets),
    ].join('\n');
    return { machine, factory: { pid: factory.pid, logLevel: options.logLevel, workers: options.workers ?? 'factory default' }, load, warmupS, samples, ...verdict, targets, text };
  } finally {
    await factory.stop();
  }
}
