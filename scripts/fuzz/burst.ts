import { percentile } from '../bench/stats.js';

/**
 * The keygen-burst measurement: the latency of issuance for an existing key at rest, then while
 * `creations` new RS256 keyIds are asked for at once. With key generation on its own bounded
 * queue, the p99 during the burst should stay within twice the idle p99.
 */

export interface BurstResult {
  idle: { requests: number; p50Ms: number; p99Ms: number };
  burst: { requests: number; p50Ms: number; p99Ms: number };
  /** burst p99 / idle p99. */
  ratio: number;
  /** How the creations were answered, by status (200 created, 503 key_generation_busy). */
  creations: Record<string, number>;
  /** From the first creation sent to the last answered. */
  burstMs: number;
}

const round = (ms: number) => Math.round(ms * 100) / 100;

/** Issues for `keyId` with `inFlight` requests at a time until `until()` is true (at least `min` requests); returns each latency in ms. */
async function issueWhile(base: string, keyId: string, inFlight: number, min: number, until: () => boolean): Promise<number[]> {
  const latencies: number[] = [];
  const worker = async () => {
    while (latencies.length < min || !until()) {
      const start = performance.now();
      const res = await fetch(`${base}/issueToken/${keyId}`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/plain' }, body: '{"aud":"serviceb"}' });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`issuance for ${keyId} answered ${res.status}`);
      latencies.push(performance.now() - start);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return latencies;
}

/** Measures issuance for `keyId` (existing) at rest and during a burst of `creations` new keyIds named `<prefix>-<i>`. */
export async function measureKeygenBurst(base: string, options: { keyId: string; creations: number; prefix: string; inFlight?: number; idleRequests?: number }): Promise<BurstResult> {
  const inFlight = options.inFlight ?? 4;
  // Warm the connections and the JIT before either sample.
  await issueWhile(base, options.keyId, inFlight, 100, () => true);
  const idle = await issueWhile(base, options.keyId, inFlight, options.idleRequests ?? 400, () => true);
  const creations: Record<string, number> = {};
  let pending = options.creations;
  const started = performance.now();
  const burst = Promise.all(
    Array.from({ length: options.creations }, async (_, i) => {
      try {
        const res = await fetch(`${base}/keys/${options.prefix}-${i}?alg=RS256`, { method: 'POST' });
        await res.arrayBuffer();
        creations[res.status] = (creations[res.status] ?? 0) + 1;
      } catch {
        creations.error = (creations.error ?? 0) + 1;
      } finally {
        pending -= 1;
      }
    }),
  );
  const during = await issueWhile(base, options.keyId, inFlight, 50, () => pending === 0);
  await burst;
  const burstMs = performance.now() - started;
  const stats = (l: number[]) => ({ requests: l.length, p50Ms: round(percentile(l, 50)), p99Ms: round(percentile(l, 99)) });
  const idleStats = stats(idle);
  const burstStats = stats(during);
  return { idle: idleStats, burst: burstStats, ratio: round(burstStats.p99Ms / idleStats.p99Ms), creations, burstMs: Math.round(burstMs) };
}
