import fc from 'fast-check';
import { requests, type FuzzContext, type Target } from './requests.js';
import { sendRaw, type Outcome, type RawRequest } from './send.js';

/** What a fuzz run met, by status ("500", "timeout", "closed"), with a few examples of each failure. */
export interface FuzzTally {
  sent: number;
  counts: Record<string, number>;
  /** Up to five requests per failing kind (5xx, timeout), for the report and the bug report. */
  failures: Array<{ kind: string; method: string; target: string; headers: Array<[string, string]>; bodyStart: string }>;
}

/** True when an outcome is a defect: a 5xx, or a request left without an answer past the timeout. */
export const isFailure = (o: Outcome): boolean => (o.kind === 'answer' ? o.status >= 500 : o.kind === 'timeout');

const kindOf = (o: Outcome): string => (o.kind === 'answer' ? String(o.status) : o.kind);

/** Sends `count` fuzzed requests for `target` to `port`, `concurrency` at a time, and counts what came back. */
export async function fuzzServer(options: {
  port: number;
  target: Target;
  context: FuzzContext;
  count: number;
  concurrency: number;
  timeoutMs: number;
  seed: number;
  onProgress?: (sent: number) => void;
}): Promise<FuzzTally> {
  const tally: FuzzTally = { sent: 0, counts: {}, failures: [] };
  const arb = requests(options.target, options.context);
  const BATCH = 500;
  let batch: RawRequest[] = [];
  let batchNo = 0;
  let taken = 0;
  const next = (): RawRequest | undefined => {
    if (taken >= options.count) return undefined;
    if (batch.length === 0) {
      batch = fc.sample(arb, { numRuns: Math.min(BATCH, options.count - taken), seed: options.seed + batchNo });
      batchNo += 1;
    }
    taken += 1;
    return batch.pop();
  };
  const worker = async () => {
    for (let req = next(); req; req = next()) {
      const outcome = await sendRaw(options.port, req, options.timeoutMs);
      const kind = kindOf(outcome);
      tally.counts[kind] = (tally.counts[kind] ?? 0) + 1;
      tally.sent += 1;
      if (isFailure(outcome) && tally.failures.filter((f) => f.kind === kind).length < 5) {
        tally.failures.push({ kind, method: req.method, target: req.target.slice(0, 200), headers: req.headers.map(([n, v]) => [n, v.slice(0, 80)]), bodyStart: req.body.subarray(0, 160).toString('latin1') });
      }
      if (tally.sent % 1000 === 0) options.onProgress?.(tally.sent);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return tally;
}
