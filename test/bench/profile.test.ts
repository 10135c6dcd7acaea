import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../../scripts/bench/launch.js';
import { frameLocation, summarizeProfile } from '../../scripts/bench/profile.js';

const frame = (id: number, functionName: string, url: string, lineNumber = 0) => ({ id, callFrame: { functionName, url, lineNumber } });

describe('CPU profile summary', () => {
  it('names where a frame lives: our file, a package file, a node module or a V8 bucket', () => {
    expect(frameLocation(`file://${path.join(ROOT, 'jwt-factory/tokens.ts')}`)).toEqual({ owner: 'jwt-factory/tokens.ts', file: 'jwt-factory/tokens.ts' });
    expect(frameLocation(`file://${ROOT}/node_modules/jose/dist/webapi/jwt/sign.js`)).toEqual({ owner: 'jose', file: 'jose/dist/webapi/jwt/sign.js' });
    expect(frameLocation(`file://${ROOT}/node_modules/@scope/pkg/index.js`).owner).toBe('@scope/pkg');
    expect(frameLocation('node:internal/crypto/util')).toEqual({ owner: 'node', file: 'node:internal/crypto/util' });
    expect(frameLocation('', '(garbage collector)').owner).toBe('(garbage collector)');
    expect(frameLocation('', 'writev').owner).toBe('(native)');
  });

  it('shares self time among busy samples only, by function and by owner, largest first', () => {
    const summary = summarizeProfile({
      startTime: 0,
      endTime: 2_000_000,
      nodes: [frame(1, '(idle)', ''), frame(2, 'sign', `file://${ROOT}/node_modules/jose/a.js`, 9), frame(3, 'write', `file://${ROOT}/node_modules/pino/b.js`), frame(4, 'verify', `file://${ROOT}/node_modules/jose/c.js`)],
      samples: [1, 1, 1, 1, 2, 2, 3, 4, 1, 2],
    });
    expect(summary.totalMs).toBe(2000);
    expect(summary.owners).toEqual([
      { name: 'jose', where: '', selfPct: 80 },
      { name: 'pino', where: '', selfPct: 20 },
    ]);
    expect(summary.functions[0]).toEqual({ name: 'sign', where: 'jose/a.js:10', selfPct: 60 });
  });
});
