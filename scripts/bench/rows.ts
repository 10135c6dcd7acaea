import { statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ALGORITHMS, ROW_LABELS, type Algorithm, type BenchOptions, type RowName } from './args.js';
import { measureCryptoCeiling, measureHttpCeiling } from './ceilings.js';
import { benchKeyId, ISSUE_BODY, ISSUE_CLAIMS, issueTarget, prepareKey, startFactory, tempPaths, verifyTarget, type BenchKey } from './factory.js';
import { exportPrivateJwk } from './keystore.js';
import { runLoad, type LoadResult, type LoadSettings } from './load.js';
import { evaluateTargets, formatRowsReport, withRatios, type Ceilings, type RowResult, type TargetResult } from './report.js';
import { treeCpuMs } from './launch.js';
import { describeProfiles } from './profile.js';
import { runScenarioRows } from './scenarios.js';


const algOf = (row: RowName): Algorithm | undefined => ALGORITHMS.find((a) => row.startsWith(`${a.toLowerCase()}-`));
const kindOf = (row: RowName) => (row.endsWith('-issue') ? ('issue' as const) : ('verify' as const));

/** The run's context, printed above the table and stored in the JSON. */
export function machineContext() {
  const cpus = os.cpus();
  return { cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', node: process.version, platform: `${os.platform()} ${os.release()}` };
}

export interface RowsRun {
  machine: ReturnType<typeof machineContext>;
  settings: Omit<BenchOptions, 'mode' | 'help' | 'outDir'>;
  factory: { startupMs: number; logLevel: string; workers: string; pid: number; logBytesPerRequest?: number };
  ceilings: Ceilings;
  rows: RowResult[];
  targets: TargetResult[];
  notes: string[];
  text: string;
}

/**
 * The default mode: the factory as a real process, its two ceilings measured in the same run,
 * then every selected row under the same load settings.
 */
export async function runRows(options: BenchOptions, tmpDir: string, progress: (line: string) => void): Promise<RowsRun> {
  const settings: LoadSettings = { connections: options.connections, durationS: options.durationS, warmupS: options.warmupS };
  const paths = tempPaths(tmpDir);
  const factoryRows = options.rows.filter((r) => algOf(r) !== undefined);
  const algs = ALGORITHMS.filter((a) => factoryRows.some((r) => algOf(r) === a));
  const ceilings: Ceilings = { crypto: {} };
  const rows: RowResult[] = [];
  const notes: string[] = [];

  progress(`starting the factory (LOG_LEVEL=${options.logLevel}, WORKERS=${options.workers ?? 'factory default'}, KEYS_DIR=${paths.keysDir})`);
  // A fresh folder per run, so the summary reads this run's profiles only (one per process).
  const profileDir = options.cpuProf ? path.resolve(options.outDir, `profile-${new Date().toISOString().replace(/[:.]/g, '-')}`) : undefined;
  const factory = await startFactory({
    keysDir: paths.keysDir,
    logLevel: options.logLevel,
    workers: options.workers,
    logFile: paths.factoryLog,
    ...(profileDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : {}),
  });
  const baseUrl = `http://127.0.0.1:${factory.port}`;
  let logBytesPerRequest: number | undefined;
  try {
    const keys = new Map<Algorithm, BenchKey>();
    for (const alg of algs) {
      try {
        keys.set(alg, await prepareKey(baseUrl, benchKeyId(alg), alg));
      } catch (err) {
        notes.push(`${alg}: could not create the key or issue a first token: ${(err as Error).message}`);
      }
    }
    // Each ceiling is measured next to the rows it is compared with, and the HTTP ceiling both
    // before and after the factory rows: on a shared machine the neighbours' load drifts.
    const httpRuns: LoadResult[] = [];
    const measureHttp = async (when: string) => {
      progress(`measuring the HTTP ceiling ${when} the factory rows (trivial express 5 JSON route, its own process)`);
      httpRuns.push(await measureHttpCeiling(settings, { body: ISSUE_BODY, workers: options.workers, logFile: paths.ceilingLog }));
    };
    if (factoryRows.length > 0) await measureHttp('before');
    const logBefore = statSync(paths.factoryLog).size;
    let requests = 0;
    for (const alg of algs) {
      const key = keys.get(alg);
      const algRows = factoryRows.filter((r) => algOf(r) === alg);
      if (!key) {
        rows.push(...algRows.map((row) => ({ row, label: ROW_LABELS[row], kind: kindOf(row), alg, skipped: `no ${alg} key (see notes)` })));
        continue;
      }
      progress(`measuring the crypto ceiling for ${alg} (jose, ${options.connections} in flight, its own process)`);
      try {
        ceilings.crypto[alg] = await measureCryptoCeiling({
          alg,
          privateJwk: await exportPrivateJwk(paths.keysDir, key.keyId),
          publicJwk: await publicJwkOf(baseUrl, key),
          header: key.header,
          payload: key.payload,
          token: key.token,
          verify: { issuer: key.payload.iss, audience: ISSUE_CLAIMS.aud, subject: key.payload.sub },
          inFlight: options.connections,
          durationS: options.durationS,
          warmupS: options.warmupS,
        });
      } catch (err) {
        notes.push(`crypto ceiling ${alg} not measured: ${(err as Error).message}`);
      }
      for (const row of algRows) {
        progress(`loading the factory: ${ROW_LABELS[row]}`);
        const kind = kindOf(row);
        const load = await runLoad(kind === 'issue' ? issueTarget(baseUrl, key) : verifyTarget(baseUrl, key), settings, () => treeCpuMs(factory.pid));
        requests += load.requests + load.warmupRequests;
        rows.push({ row, label: ROW_LABELS[row], kind, alg, load });
      }
    }
    if (factoryRows.length > 0) {
      await measureHttp('after');
      ceilings.httpRuns = httpRuns;
      // Ratios use the mean of the two runs; the table shows both.
      ceilings.http = { ...httpRuns[0]!, rps: Math.round(httpRuns.reduce((sum, r) => sum + r.rps, 0) / httpRuns.length) };
    }
    if (requests > 0) logBytesPerRequest = Math.round((statSync(paths.factoryLog).size - logBefore) / requests);

    // The scenario rows use the same factory process: servicea asks it for tokens in scenario 1.
    const scenarioRows = options.rows.filter((r) => r.startsWith('scenario'));
    if (scenarioRows.length > 0) {
      const measured = await runScenarioRows(scenarioRows, settings, { factoryUrl: baseUrl, factoryPid: factory.pid, tmpDir }, progress);
      rows.push(...measured.map((r) => ({ ...r, label: ROW_LABELS[r.row] })));
    }
  } finally {
    await factory.stop();
  }

  const measured = withRatios(rows, ceilings);
  const targets = evaluateTargets(measured);
  const factoryInfo = {
    startupMs: Math.round(factory.startupMs),
    logLevel: options.logLevel,
    workers: options.workers === undefined ? 'factory default' : String(options.workers),
    pid: factory.pid,
    ...(logBytesPerRequest === undefined ? {} : { logBytesPerRequest }),
  };
  const machine = machineContext();
  const context = [
    `jwt-factory benchmark: ${machine.cpus} x ${machine.cpuModel}, Node ${machine.node}`,
    `load: autocannon, ${options.connections} connections, ${options.warmupS} s warm-up + ${options.durationS} s per row; crypto ceiling: ${options.connections} operations in flight`,
    `factory: LOG_LEVEL=${factoryInfo.logLevel}, WORKERS=${factoryInfo.workers}, log to a file (${logBytesPerRequest ?? '-'} bytes per request), start-up ${factoryInfo.startupMs} ms`,
  ];
  const { mode: _mode, help: _help, outDir: _outDir, ...rest } = options;
  // The profile is written when the factory exits, which the finally above waited for.
  const profile = profileDir ? await describeProfiles(profileDir) : undefined;
  const text = [formatRowsReport(measured, ceilings, targets, context), ...notes.map((n) => `note: ${n}`), ...(profile ? ['', profile.text] : [])].join('\n');
  return { machine, settings: rest, factory: factoryInfo, ceilings, rows: measured, targets, notes, ...(profile ? { profiles: profile.files } : {}), text };
}

/** The key's public JWK as the factory publishes it (the verify ceiling uses exactly that key). */
async function publicJwkOf(baseUrl: string, key: BenchKey) {
  const res = await fetch(`${baseUrl}/.well-known/jwks.json`);
  const jwks = (await res.json()) as { keys: Array<Record<string, unknown>> };
  const jwk = jwks.keys.find((k) => k.kid === key.header.kid);
  if (!jwk) throw new Error(`the JWKS does not publish kid ${String(key.header.kid)} of ${key.keyId}`);
  return jwk;
}
