import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requests, type Target } from '../../scripts/fuzz/requests.js';
import { isFailure } from '../../scripts/fuzz/run.js';
import { sendRaw } from '../../scripts/fuzz/send.js';
import { healthStatus, startFuzzSuite, type FuzzSuite } from '../../scripts/fuzz/suite.js';

/**
 * Property: whatever a client sends to any server of the suite (paths, methods, headers, bodies,
 * tokens, YAML for POST /mesh/evaluate), the answer is never a 5xx and comes within the
 * timeout, and every process stays alive with /healthz answering. Real processes on loopback;
 * fast-check picks a new seed each run and prints it with the shrunk request on a failure.
 */

/** Past this, a request counts as a hang (the servers' own HEADERS_TIMEOUT_MS is 5 s). */
const TIMEOUT_MS = 8000;
/** Requests sent at once in one property run. */
const BATCH = 8;
/** Property runs per target: about 1,900 requests in all, some 10 s on two cores. */
const RUNS: Record<Target, number> = { factory: 120, service: 60, gateway: 60 };

let dir: string;
let suite: FuzzSuite;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'fuzz-'));
  suite = await startFuzzSuite(dir);
}, 120_000);
afterAll(async () => {
  const codes = await suite?.stop();
  await rm(dir, { recursive: true, force: true });
  // Every process was still running at the end and drained on SIGTERM.
  expect(codes).toEqual([0, 0, 0, 0]);
});

/** Every process answers /healthz: 200 from the factory and the services, any non-5xx through the gateway. */
async function expectAllHealthy(): Promise<void> {
  const p = suite.processes;
  const statuses = await Promise.all([p.factory, p.service, p.serviceb, p.gateway].map((x) => healthStatus(x.port)));
  expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
  expect(statuses[3]).toBeGreaterThanOrEqual(200);
  expect(statuses[3]).toBeLessThan(500);
}

describe('fuzzed requests never answer 5xx nor hang, and every process keeps serving', () => {
  for (const target of ['factory', 'service', 'gateway'] as const) {
    it(`the ${target}`, async () => {
      const port = suite.processes[target].port;
      let run = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(requests(target, suite.context), { minLength: BATCH, maxLength: BATCH }), async (batch) => {
          const outcomes = await Promise.all(batch.map((req) => sendRaw(port, req, TIMEOUT_MS)));
          const bad = outcomes.map((o, i) => ({ o, req: batch[i]! })).filter(({ o }) => isFailure(o));
          expect(bad.map(({ o, req }) => `${o.kind === 'answer' ? o.status : o.kind} for ${req.method} ${req.target.slice(0, 120)}`)).toEqual([]);
          run += 1;
          if (run % 20 === 0) await expectAllHealthy();
        }),
        { numRuns: RUNS[target], endOnFailure: true },
      );
      await expectAllHealthy();
    }, 120_000);
  }
});
