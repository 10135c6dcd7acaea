import path from 'node:path';
import type { BenchOptions } from './args.js';
import { benchKeyId, issueTarget, prepareKey, startFactory } from './factory.js';
import { createKeyFiles } from './keystore.js';
import { treeCpuMs } from './launch.js';
import { runLoad, type LoadResult, type LoadSettings } from './load.js';
import { machineContext } from './rows.js';
import { formatTargets, table, TARGETS, type TargetResult } from './report.js';
import { round } from './stats.js';

/** Key type of the generated store: EC P-256 keys generate in about a millisecond, RSA 2048 in ~100 ms. */
export const GENERATED_ALG = 'ES256' as const;
/** Start-up budget with the large store (issue 5). */
export const STARTUP_BUDGET_MS = 5000;
/** "Unchanged within noise": issuance with the large store keeps at least this share of the small store's. */
export const NOISE_SHARE = 0.9;

interface StoreRun {
  keys: number;
  startupMs: number;
  issuance: LoadResult;
  jwksAll: LoadResult;
  jwksAllBytes: number;
  jwksAllConditional?: LoadResult;
  jwksOne: LoadResult;
}

/** Starts the factory on `keysDir` and measures start-up, issuance and the JWKS endpoints. */
async function measureStore(
  keysDir: string,
  keys: number,
  options: BenchOptions,
  settings: LoadSettings,
  logFile: string,
  progress: (line: string) => void,
): Promise<StoreRun> {
  progress(`starting the factory with ${keys} keys in the store`);
  const factory = await startFactory({ keysDir, logLevel: options.logLevel, workers: options.workers, logFile });
  const baseUrl = `http://127.0.0.1:${factory.port}`;
  const cpu = () => treeCpuMs(factory.pid);
  try {
    const key = await prepareKey(baseUrl, benchKeyId(GENERATED_ALG), GENERATED_ALG);
    progress(`  issuance (${GENERATED_ALG})`);
    const issuance = await runLoad(issueTarget(baseUrl, key), settings, cpu);
    const jwksUrl = `${baseUrl}/.well-known/jwks.json`;
    const first = await fetch(jwksUrl);
    const body = await first.text();
    const etag = first.headers.get('etag');
    progress(`  GET /.well-known/jwks.json (${round(body.length / 1024, 0)} KiB)`);
    const jwksAll = await runLoad({ url: jwksUrl }, settings, cpu);
    let jwksAllConditional: LoadResult | undefined;
    if (etag) {
      progress('  GET /.well-known/jwks.json with If-None-Match (304)');
      // A 304 is not 2xx for autocannon; count it in the answer, not as an error.
      const conditional = await runLoad({ url: jwksUrl, headers: { 'if-none-match': etag } }, settings, cpu);
      jwksAllConditional = { ...conditional, errors: conditional.errorDetail.socketErrors + conditional.errorDetail.timeouts };
    }
    progress(`  GET /keys/${key.keyId}/jwks.json`);
    const jwksOne = await runLoad({ url: `${baseUrl}/keys/${encodeURIComponent(key.keyId)}/jwks.json` }, settings, cpu);
    return { keys, startupMs: Math.round(factory.startupMs), issuance, jwksAll, jwksAllBytes: body.length, jwksAllConditional, jwksOne };
  } finally {
    await factory.stop();
  }
}

/** Judges issue 5's "scale with the number of keys" against the two runs. */
export function evaluateKeyTargets(small: Pick<StoreRun, 'issuance' | 'jwksOne'>, large: Pick<StoreRun, 'keys' | 'startupMs' | 'issuance' | 'jwksOne' | 'jwksAllConditional'>): TargetResult[] {
  const share = large.issuance.rps / small.issuance.rps;
  const oneShare = large.jwksOne.rps / small.jwksOne.rps;
  const results: TargetResult[] = [
    {
      target: `start-up with ${large.keys} keys < ${STARTUP_BUDGET_MS / 1000} s`,
      measured: `${large.startupMs} ms`,
      required: `< ${STARTUP_BUDGET_MS} ms`,
      pass: large.startupMs < STARTUP_BUDGET_MS,
      ...(large.startupMs < STARTUP_BUDGET_MS ? {} : { shortBy: `${large.startupMs - STARTUP_BUDGET_MS} ms over` }),
    },
    {
      target: `issuance with ${large.keys} keys unchanged within noise (>= ${NOISE_SHARE * 100}% of the small store)`,
      measured: `${round(share * 100, 1)}% (${large.issuance.rps}/s vs ${small.issuance.rps}/s)`,
      required: `>= ${NOISE_SHARE * 100}%`,
      pass: share >= NOISE_SHARE,
    },
    {
      target: `per-key JWKS with ${large.keys} keys unchanged within noise (>= ${NOISE_SHARE * 100}% of the small store)`,
      measured: `${round(oneShare * 100, 1)}% (${large.jwksOne.rps}/s vs ${small.jwksOne.rps}/s)`,
      required: `>= ${NOISE_SHARE * 100}%`,
      pass: oneShare >= NOISE_SHARE,
    },
  ];
  for (const [name, load] of [['issuance', large.issuance], ['per-key JWKS', large.jwksOne], ['JWKS revalidation (304)', large.jwksAllConditional]] as const) {
    if (!load) continue;
    results.push({
      target: `${name} with ${large.keys} keys: p99 < ${TARGETS.p99Ms} ms, no errors`,
      measured: `${load.p99Ms} ms, ${load.errors} errors`,
      required: `< ${TARGETS.p99Ms} ms, 0`,
      pass: load.p99Ms < TARGETS.p99Ms && load.errors === 0,
    });
  }
  return results;
}

/**
 * `--keys N`: N key files written through the factory's own key store into a temporary
 * KEYS_DIR, then start-up, issuance and JWKS speed compared with a store of one key.
 */
export async function runKeysMode(options: BenchOptions & { mode: { kind: 'keys'; count: number } }, tmpDir: string, progress: (line: string) => void) {
  const settings: LoadSettings = { connections: options.connections, durationS: options.durationS, warmupS: options.warmupS };
  const count = options.mode.count;
  const small = await measureStore(path.join(tmpDir, 'small-keys'), 1, options, settings, path.join(tmpDir, 'factory-small.log'), progress);

  const largeDir = path.join(tmpDir, 'large-keys');
  progress(`writing ${count} ${GENERATED_ALG} key files with the factory's key store into ${largeDir}`);
  const generationMs = await createKeyFiles(largeDir, {
    count,
    prefix: 'tenant',
    alg: GENERATED_ALG,
    concurrency: 16,
    onProgress: (done) => progress(`  ${done} / ${count}`),
  });
  // + 1: the bench's own issuing key, created through the API like the small store's.
  const large = await measureStore(largeDir, count + 1, options, settings, path.join(tmpDir, 'factory-large.log'), progress);
  const targets = evaluateKeyTargets(small, large);

  const row = (label: string, l: LoadResult | undefined) =>
    l ? [label, String(l.rps), String(l.p50Ms), String(l.p99Ms), String(l.errors), String(l.serverCpuMsPerRequest ?? '-')] : [label, '-', '-', '-', '-', '-'];
  const machine = machineContext();
  const text = [
    `jwt-factory benchmark, --keys ${count}: ${machine.cpus} x ${machine.cpuModel}, Node ${machine.node}`,
    `store generated with the factory's key store: ${count} ${GENERATED_ALG} keys in ${round(generationMs / 1000, 1)} s (EC keys: RSA 2048 generation would take minutes)`,
    `load: autocannon, ${options.connections} connections, ${options.warmupS} s warm-up + ${options.durationS} s per row; factory LOG_LEVEL=${options.logLevel}, WORKERS=${options.workers ?? 'factory default'}`,
    '',
    table(
      ['store', 'start-up ms', 'JWKS size'],
      [
        [`${small.keys} key`, String(small.startupMs), `${small.jwksAllBytes} B`],
        [`${large.keys} keys`, String(large.startupMs), `${round(large.jwksAllBytes / 1024, 0)} KiB`],
      ],
    ),
    '',
    table(
      ['row', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'CPU ms/req'],
      [
        row(`${GENERATED_ALG} issuance, ${small.keys} key`, small.issuance),
        row(`${GENERATED_ALG} issuance, ${large.keys} keys`, large.issuance),
        row(`GET /.well-known/jwks.json, ${small.keys} key`, small.jwksAll),
        row(`GET /.well-known/jwks.json, ${large.keys} keys`, large.jwksAll),
        row(`same, If-None-Match (304), ${small.keys} key`, small.jwksAllConditional),
        row(`same, If-None-Match (304), ${large.keys} keys`, large.jwksAllConditional),
        row(`GET /keys/:keyId/jwks.json, ${small.keys} key`, small.jwksOne),
        row(`GET /keys/:keyId/jwks.json, ${large.keys} keys`, large.jwksOne),
      ],
    ),
    '',
    formatTargets(targets),
  ].join('\n');
  return { machine, generation: { alg: GENERATED_ALG, keys: count, ms: Math.round(generationMs) }, small, large, targets, text };
}
