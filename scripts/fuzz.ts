import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { measureKeygenBurst, type BurstResult } from './fuzz/burst.js';
import type { Target } from './fuzz/requests.js';
import { fuzzServer, type FuzzTally } from './fuzz/run.js';
import { healthStatus, rssKb, startFuzzSuite } from './fuzz/suite.js';

/**
 * `npm run fuzz -- --requests N`: the long form of test/fuzz. Starts the suite, sends N fuzzed
 * requests split over the targets, and reports the answers by status, any 5xx or stall with
 * its request, /healthz of every process, their memory before and after, and the latency of
 * issuance for an existing key during a burst of key creations. Exit 0 when nothing failed,
 * 1 when a request answered 5xx or stalled or a process stopped answering, 2 for a usage mistake.
 */

const TARGETS: readonly Target[] = ['factory', 'service', 'gateway'];

const USAGE = `Usage: npm run fuzz -- [options]

  --requests N      fuzzed requests in all, split evenly over the targets   (default 10000)
  --targets LIST    comma-separated: ${TARGETS.join(', ')}               (default all)
  --concurrency C   requests in flight per target                           (default 16)
  --timeout MS      an answer later than this counts as a stall             (default 8000)
  --seed S          fast-check seed, to replay a run                        (default: random, printed)
  --burst N         new RS256 keyIds asked for at once while issuance is timed (default 200; 0 skips)
  --help            this text

Exit code: 0 no 5xx, no stall, every process healthy; 1 otherwise; 2 usage.`;

class UsageError extends Error {}

interface FuzzOptions {
  requests: number;
  targets: Target[];
  concurrency: number;
  timeoutMs: number;
  seed: number;
  burst: number;
}

/** Parses the command line (node:util parseArgs); throws UsageError naming the option. */
function parseFuzzArgs(argv: string[]): FuzzOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      requests: { type: 'string', default: '10000' },
      targets: { type: 'string', default: TARGETS.join(',') },
      concurrency: { type: 'string', default: '16' },
      timeout: { type: 'string', default: '8000' },
      seed: { type: 'string' },
      burst: { type: 'string', default: '200' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  const integer = (name: string, raw: string, min: number, max: number) => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
    return n;
  };
  const targets = values.targets.split(',').map((t) => t.trim()) as Target[];
  const unknown = targets.find((t) => !TARGETS.includes(t));
  if (unknown !== undefined || targets.length === 0) throw new UsageError(`--targets takes ${TARGETS.join(', ')} (got "${unknown ?? ''}")`);
  return {
    requests: integer('requests', values.requests, 1, 10_000_000),
    targets: [...new Set(targets)],
    concurrency: integer('concurrency', values.concurrency, 1, 512),
    timeoutMs: integer('timeout', values.timeout, 100, 600_000),
    seed: values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : integer('seed', values.seed, 0, 2 ** 31 - 1),
    burst: integer('burst', values.burst, 0, 10_000),
  };
}

const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`;

/** The report's lines for one target's tally. */
function describeTally(target: Target, tally: FuzzTally, seconds: number): string[] {
  const counts = Object.entries(tally.counts)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
  return [
    `${target}: ${tally.sent} requests in ${seconds.toFixed(1)} s — ${counts}`,
    ...tally.failures.map((f) => `  FAILED ${f.kind}: ${f.method} ${f.target} ${JSON.stringify(f.headers)} body ${JSON.stringify(f.bodyStart)}`),
  ];
}

async function main(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseFuzzArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError) && !(err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) throw err;
    process.stderr.write(`fuzz: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'jwt-fuzz-'));
  process.stderr.write(`fuzz: seed ${options.seed}; starting the suite (logs in ${dir})\n`);
  const suite = await startFuzzSuite(dir);
  let failed = false;
  try {
    const p = suite.processes;
    const all = [['jwt-factory', p.factory], ['servicea', p.service], ['serviceb', p.serviceb], ['mesh-gateway', p.gateway]] as const;
    const rssBefore = all.map(([, x]) => rssKb(x.pid));
    const lines: string[] = [];
    const perTarget = Math.ceil(options.requests / options.targets.length);
    await Promise.all(
      options.targets.map(async (target, i) => {
        const started = performance.now();
        const tally = await fuzzServer({
          port: p[target].port,
          target,
          context: suite.context,
          count: perTarget,
          concurrency: options.concurrency,
          timeoutMs: options.timeoutMs,
          seed: options.seed + i * 1_000_003,
          onProgress: (sent) => process.stderr.write(`  ${target}: ${sent}/${perTarget}\n`),
        });
        if (tally.failures.length > 0) failed = true;
        lines.push(...describeTally(target, tally, (performance.now() - started) / 1000));
      }),
    );
    const health = await Promise.all(all.map(([, x]) => healthStatus(x.port)));
    all.forEach(([name], i) => {
      const ok = name === 'mesh-gateway' ? health[i]! > 0 && health[i]! < 500 : health[i] === 200;
      if (!ok) failed = true;
      lines.push(`${name}: /healthz ${health[i] || 'no answer'}; memory ${mb(rssBefore[i]!)} before, ${mb(rssKb(all[i]![1].pid))} after`);
    });
    let burst: BurstResult | undefined;
    if (options.burst > 0) {
      process.stderr.write(`fuzz: keygen burst of ${options.burst} creations\n`);
      burst = await measureKeygenBurst(`http://127.0.0.1:${p.factory.port}`, { keyId: 'fuzz-a', creations: options.burst, prefix: `burst-${options.seed}` });
      lines.push(
        `keygen burst: issuance for an existing RS256 key, p99 ${burst.idle.p99Ms} ms idle (${burst.idle.requests} requests) vs ${burst.burst.p99Ms} ms during ${options.burst} concurrent creations (${burst.burst.requests} requests, ${burst.burstMs} ms): ${burst.ratio}x; creations answered ${JSON.stringify(burst.creations)}`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n${failed ? 'FAILED: a 5xx, a stall or a process that stopped answering (above)' : 'ok: no 5xx, no stall, every process answering'}\n`);
    return failed ? 1 : 0;
  } finally {
    const codes = await suite.stop();
    if (codes.some((c) => c !== 0)) {
      process.stderr.write(`fuzz: a process did not stop cleanly (exit codes ${codes.join(', ')}); logs kept in ${dir}\n`);
      process.exitCode = 1;
    } else if (!failed) {
      await rm(dir, { recursive: true, force: true });
    } else {
      process.stderr.write(`fuzz: logs kept in ${dir}\n`);
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = Math.max(Number(process.exitCode ?? 0), code);
  },
  (err: Error) => {
    process.stderr.write(`fuzz: ${err.message}\n`);
    process.exitCode = 1;
  },
);
