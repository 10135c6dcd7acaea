import { beforeAll, describe, expect, it } from 'vitest';
import { evaluate } from '../../mesh/evaluate.js';
import { loadPolicyObjects } from '../../mesh/istio/policies.js';
import { CASES, JWKS_SETS, NOW, POLICY_SETS, WORKLOAD, createCtx, type Ctx } from './cases.js';
import { assertOutcome, fromVerdict } from './outcome.js';

let ctx: Ctx;
beforeAll(async () => {
  ctx = await createCtx();
});

describe('the mesh table through the engine', () => {
  it('has at least 60 cases, each citing its source', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(60);
    for (const c of CASES) expect(c.cite.length, c.name).toBeGreaterThan(10);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const verdict = await evaluate({
        policies: loadPolicyObjects(POLICY_SETS[c.set]!(ctx), c.set),
        request: await c.request(ctx),
        jwks: JWKS_SETS[c.set]?.(ctx),
        now: NOW,
        workload: WORKLOAD,
      });
      assertOutcome(fromVerdict(verdict), c.expect);
    });
  }
});
