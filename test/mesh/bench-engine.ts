import { evaluate, evaluatePrepared, prepareSidecar } from '../../mesh/evaluate.js';
import { loadPolicyObjects } from '../../mesh/istio/policies.js';
import { CASES, JWKS_SETS, NOW, POLICY_SETS, WORKLOAD, createCtx } from './cases.js';

/**
 * A yardstick, not a test: every case of the mesh table evaluated N times (default 30), as
 * POST /mesh/evaluate does (translate on each call) and as the gateway does (translated once per
 * reload, so only enforce runs per request). Prints the fastest pass, per evaluation, in ms.
 * Run: node --import tsx test/mesh/bench-engine.ts [N]
 */
const rounds = Number(process.argv[2] ?? 30);
const ctx = await createCtx();
const inputs = await Promise.all(
  CASES.map(async (c) => ({ policies: loadPolicyObjects(POLICY_SETS[c.set]!(ctx), c.set), request: await c.request(ctx), jwks: JWKS_SETS[c.set]?.(ctx), now: NOW, workload: WORKLOAD })),
);
const sidecars = inputs.map((input) => prepareSidecar(input));

/** The fastest of `rounds` passes over the table, per evaluation: other work on the machine only slows some passes down. */
async function time(run: () => Promise<unknown>): Promise<number> {
  await run();
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < rounds; r += 1) {
    const start = performance.now();
    await run();
    best = Math.min(best, performance.now() - start);
  }
  return Number((best / inputs.length).toFixed(3));
}

const perCall = await time(async () => {
  for (const input of inputs) await evaluate(input);
});
const prepared = await time(async () => {
  for (const [i, input] of inputs.entries()) await evaluatePrepared(sidecars[i]!, input.request, input);
});
console.log(JSON.stringify({ cases: inputs.length, rounds, evaluateMs: perCall, preparedMs: prepared }));
