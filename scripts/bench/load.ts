import autocannon from 'autocannon';
import { round } from './stats.js';

/** One HTTP request shape the load generator repeats (or a sequence it cycles through). */
export interface LoadTarget {
  url: string;
  method?: 'GET' | 'POST';
  body?: string;
  headers?: Record<string, string>;
  /** A sequence each connection cycles through, instead of one request. */
  requests?: autocannon.Request[];
}

export interface LoadSettings {
  connections: number;
  durationS: number;
  warmupS: number;
}

/** Reads the server's CPU time (ms) so far: sampled around the measured run only. */
export type CpuMeter = () => number;

export interface LoadResult {
  /** Mean requests per second over the measured seconds. */
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** Requests answered during the warm-up (not in the figures). */
  warmupRequests: number;
  /** Non-2xx answers, socket errors and timeouts together: every one fails "no errors". */
  errors: number;
  errorDetail: { non2xx: number; socketErrors: number; timeouts: number };
  durationS: number;
  /** Server CPU time (user + system, ms) per request during the measured run, when metered. */
  serverCpuMsPerRequest?: number;
}

function fire(target: LoadTarget, connections: number, durationS: number): Promise<autocannon.Result> {
  return autocannon({
    url: target.url,
    method: target.method ?? 'GET',
    body: target.body,
    headers: { ...(target.body ? { 'content-type': 'application/json' } : {}), ...target.headers },
    requests: target.requests,
    connections,
    duration: durationS,
    // A slow answer is a finding, not a reason to hang: 10 s marks it as a timeout.
    timeout: 10,
  });
}

/**
 * Loads `target` with autocannon from this process: a warm-up whose figures are thrown away
 * (JIT, connection set-up, caches), then the measured run.
 */
export async function runLoad(target: LoadTarget, settings: LoadSettings, cpuMeter?: CpuMeter): Promise<LoadResult> {
  const warmup = settings.warmupS > 0 ? await fire(target, settings.connections, settings.warmupS) : undefined;
  const cpuBefore = cpuMeter?.();
  const result = await fire(target, settings.connections, settings.durationS);
  const cpuMs = cpuMeter && cpuBefore !== undefined ? cpuMeter() - cpuBefore : undefined;
  const detail = { non2xx: result.non2xx, socketErrors: result.errors, timeouts: result.timeouts };
  return {
    rps: round(result.requests.average, 0),
    p50Ms: round(result.latency.p50, 2),
    p99Ms: round(result.latency.p99, 2),
    requests: result.requests.total,
    warmupRequests: warmup?.requests.total ?? 0,
    errors: detail.non2xx + detail.socketErrors + detail.timeouts,
    errorDetail: detail,
    durationS: result.duration,
    ...(cpuMs !== undefined && result.requests.total > 0 ? { serverCpuMsPerRequest: round(cpuMs / result.requests.total, 3) } : {}),
  };
}

/**
 * One figure from several rounds of the same row: throughput over all measured seconds, CPU over
 * all requests, errors summed, and autocannon's per-round percentiles averaged (it reports no
 * histogram to merge).
 */
export function combineRounds(rounds: readonly LoadResult[]): LoadResult {
  if (rounds.length === 0) throw new Error('combineRounds needs at least one round');
  if (rounds.length === 1) return rounds[0]!;
  const sum = (f: (r: LoadResult) => number) => rounds.reduce((s, r) => s + f(r), 0);
  const requests = sum((r) => r.requests);
  const metered = rounds.every((r) => r.serverCpuMsPerRequest !== undefined);
  return {
    rps: round(requests / sum((r) => r.durationS), 0),
    p50Ms: round(sum((r) => r.p50Ms) / rounds.length, 2),
    p99Ms: round(sum((r) => r.p99Ms) / rounds.length, 2),
    requests,
    warmupRequests: sum((r) => r.warmupRequests),
    errors: sum((r) => r.errors),
    errorDetail: { non2xx: sum((r) => r.errorDetail.non2xx), socketErrors: sum((r) => r.errorDetail.socketErrors), timeouts: sum((r) => r.errorDetail.timeouts) },
    durationS: sum((r) => r.durationS),
    ...(metered && requests > 0 ? { serverCpuMsPerRequest: round(sum((r) => r.serverCpuMsPerRequest! * r.requests) / requests, 3) } : {}),
  };
}

/**
 * Loads every contender once per round, reversing the order every other round, so that a
 * neighbour's load or a thermal drift during the run falls on all of them alike.
 */
export async function alternateRounds<T extends { target: LoadTarget; cpu: CpuMeter }>(
  contenders: readonly T[],
  settings: LoadSettings,
  rounds: number,
  onRow?: (contender: T, round: number) => void,
): Promise<Map<T, LoadResult>> {
  const results = new Map<T, LoadResult[]>(contenders.map((c) => [c, []]));
  for (let r = 0; r < rounds; r += 1) {
    for (const contender of roundOrder(contenders, r)) {
      onRow?.(contender, r);
      results.get(contender)!.push(await runLoad(contender.target, settings, contender.cpu));
    }
  }
  return new Map([...results].map(([c, runs]) => [c, combineRounds(runs)]));
}

/** The order of round `r` (0-based): as given on even rounds, reversed on odd ones. */
export const roundOrder = <T>(items: readonly T[], r: number): T[] => (r % 2 === 0 ? [...items] : [...items].reverse());
