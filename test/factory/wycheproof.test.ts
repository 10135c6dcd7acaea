import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JWK } from 'jose';
import { verificationKeyFromJwk, verifyJws } from '../../lib/jwt.js';
import { ROOT } from '../helpers/process.js';

/**
 * Project Wycheproof's JWS vectors through the verification core /verify uses. The file is a
 * fixture of this repository: if it is missing the suite fails (readFileSync throws), never skips.
 */
const FILE = path.join(ROOT, 'test', 'fixtures', 'wycheproof', 'json_web_signature_test.json');

interface Vector {
  tcId: number;
  comment: string;
  jws: string | object;
  result: 'valid' | 'invalid' | 'acceptable';
}
interface Group {
  comment: string;
  public?: JWK;
  private?: JWK;
  tests: Vector[];
}

/** Vectors marked valid that we refuse on purpose, each with the reason. */
const DELIBERATELY_STRICTER: Record<number, string> = {
  346: 'the key declares alg PS256 but the token says PS384 (RFC 7520 Figure 20): the algorithm is pinned to the key, never taken from the token',
  350: 'as 346, with key_ops: the key declares PS256, the token PS384; the algorithm is pinned to the key',
  372: 'a "?" inside the header segment is not base64url (RFC 7515 §2); the strict compact form refuses stray characters that lenient decoders skip',
  373: 'a stray character inside the payload segment, as 372',
};

/**
 * Vectors that contradict another vector: the same jws, the same key, the opposite result. No
 * verifier can satisfy both; we follow the valid twin, and the test checks they are still twins.
 */
const CONTRADICTORY: Record<number, { twin: number; reason: string }> = {
  367: { twin: 357, reason: '"invalidBase64Padding" carries no padding at all: its jws is byte-identical to valid tcId 357' },
  370: { twin: 357, reason: '"invalidBase64PaddingInPayload" is byte-identical to valid tcId 357 too' },
};

/** Algorithms whose vectors we do not run, with the reason. */
const UNSUPPORTED_ALGS: Record<string, string> = {
  ES521: '"ES521" is not a JWA algorithm name (RFC 7518 calls P-521 ES512) and the factory supports no P-521 key',
};

const data = JSON.parse(readFileSync(FILE, 'utf8')) as { numberOfTests: number; testGroups: Group[] };

describe('Project Wycheproof json_web_signature_test.json', () => {
  it('holds the 401 vectors the issue names', () => {
    expect(data.numberOfTests).toBe(401);
    expect(data.testGroups.flatMap((g) => g.tests)).toHaveLength(401);
  });

  it('accepts every valid vector and refuses every invalid one, except the listed stricter and contradictory cases', async () => {
    const counts = { run: 0, accepted: 0, refused: 0, stricter: 0, contradictory: 0, skipped: 0 };
    const wrong: string[] = [];
    for (const group of data.testGroups) {
      const jwk = group.public ?? group.private!;
      const skipReason = typeof jwk.alg === 'string' ? UNSUPPORTED_ALGS[jwk.alg] : undefined;
      for (const vector of group.tests) {
        if (skipReason) {
          counts.skipped += 1;
          continue;
        }
        counts.run += 1;
        let accepted: boolean;
        try {
          // JSON serialization vectors are objects: the compact-form check refuses them.
          await verifyJws(vector.jws, [await verificationKeyFromJwk(jwk)]);
          accepted = true;
        } catch (err) {
          expect((err as Error).name).toBe('JsonWebTokenError');
          accepted = false;
        }
        if (accepted) counts.accepted += 1;
        else counts.refused += 1;
        const contradiction = CONTRADICTORY[vector.tcId];
        if (contradiction !== undefined) {
          counts.contradictory += 1;
          const twin = data.testGroups.flatMap((g) => g.tests).find((t) => t.tcId === contradiction.twin)!;
          if (twin.jws !== vector.jws || twin.result !== 'valid' || !accepted) wrong.push(`tcId ${vector.tcId} is no longer the twin of valid tcId ${contradiction.twin}: revisit CONTRADICTORY`);
          continue;
        }
        const stricter = DELIBERATELY_STRICTER[vector.tcId];
        if (stricter !== undefined) {
          counts.stricter += 1;
          if (accepted || vector.result !== 'valid') wrong.push(`tcId ${vector.tcId} is listed as stricter but was ${accepted ? 'accepted' : 'refused'} (${vector.result})`);
          continue;
        }
        if (accepted !== (vector.result === 'valid')) wrong.push(`tcId ${vector.tcId} (${group.comment} / ${vector.comment}) expected ${vector.result}, was ${accepted ? 'accepted' : 'refused'}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(counts.stricter).toBe(Object.keys(DELIBERATELY_STRICTER).length);
    expect(counts.contradictory).toBe(Object.keys(CONTRADICTORY).length);
    expect(counts.run + counts.skipped).toBe(401);
    console.info(`wycheproof: ${JSON.stringify(counts)}`);
  });
});
