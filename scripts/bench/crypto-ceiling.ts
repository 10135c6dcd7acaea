import { randomUUID } from 'node:crypto';
import { text } from 'node:stream/consumers';
import { SignJWT, importJWK, jwtVerify, type JWK, type JWTPayload, type JWTHeaderParameters } from 'jose';
import { percentile, round } from './stats.js';

/**
 * The crypto ceiling, run as its own process (`node --import tsx`, like the factory): how many
 * tokens jose signs and verifies per second with the factory's own keys, the same header and
 * claims, and as many operations in flight as the load generator keeps connections open.
 * No HTTP. The job arrives on stdin (it carries a private key, which never goes on a command
 * line); one JSON line with the results goes to stdout.
 */
export interface CeilingJob {
  alg: string;
  privateJwk: JWK;
  publicJwk: JWK;
  /** The protected header and claims of a token the factory issued, signed again per operation. */
  header: JWTHeaderParameters;
  payload: JWTPayload;
  /** A token the factory issued, verified per operation with the same pinned options as /verify. */
  token: string;
  verify: { issuer?: string; audience?: string; subject?: string };
  inFlight: number;
  durationS: number;
  warmupS: number;
}

export interface OpResult {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  ops: number;
  errors: number;
  /** CPU time (user + system, every thread) per operation, in ms. */
  cpuMsPerOp: number;
}

/** Runs `op` with `inFlight` concurrent loops for `seconds`; returns throughput and latency. */
async function measure(op: () => Promise<unknown>, inFlight: number, seconds: number): Promise<OpResult> {
  const latencies: number[] = [];
  let errors = 0;
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  const end = start + seconds * 1000;
  const loop = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await op();
        latencies.push(performance.now() - t0);
      } catch {
        errors += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
  const elapsedS = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  return {
    opsPerSec: round(latencies.length / elapsedS, 0),
    p50Ms: round(percentile(latencies, 50), 2),
    p99Ms: round(percentile(latencies, 99), 2),
    ops: latencies.length,
    errors,
    cpuMsPerOp: round((cpu.user + cpu.system) / 1000 / Math.max(1, latencies.length), 3),
  };
}

const job = JSON.parse(await text(process.stdin)) as CeilingJob;
// Keys imported once, as a well-built issuer would: the ceiling never parses a key per operation.
const privateKey = await importJWK(job.privateJwk, job.alg);
const publicKey = await importJWK(job.publicJwk, job.alg);
const lifetime = typeof job.payload.exp === 'number' && typeof job.payload.iat === 'number' ? job.payload.exp - job.payload.iat : 3600;

const sign = () => {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ ...job.payload, iat: now, exp: now + lifetime, jti: randomUUID() }).setProtectedHeader(job.header).sign(privateKey);
};
const verify = () => jwtVerify(job.token, publicKey, { algorithms: [job.alg], requiredClaims: ['exp'], ...job.verify });

await measure(sign, job.inFlight, job.warmupS);
const signResult = await measure(sign, job.inFlight, job.durationS);
await measure(verify, job.inFlight, job.warmupS);
const verifyResult = await measure(verify, job.inFlight, job.durationS);
process.stdout.write(`${JSON.stringify({ alg: job.alg, sign: signResult, verify: verifyResult })}\n`);
