import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { text } from 'node:stream/consumers';
import express from 'express';
import { SignJWT, jwtVerify, type JWTPayload } from 'jose';
import { ISSUE_CLAIMS as FLOOR_CLAIMS } from './factory.js';
import type { FloorKind } from './floors.js';
import { percentile, round } from './stats.js';

/**
 * The floors, each as a process of its own (`node --import tsx`, like the factory): the same
 * RS256 / ES256 / EdDSA signature and verification the factory does, with nothing around them
 * but (1) no HTTP at all, (2) node:http, (3) express 5 with express.json(). The factory's rows
 * divided by these say what its own code costs beyond the signature and the framework.
 * FLOOR=bare runs the operations in a loop and prints one JSON line; the others listen on PORT
 * and log `{"msg":"listening","port":N}`.
 */

const kind = (process.env.FLOOR ?? 'bare') as FloorKind;
const alg = process.env.ALG ?? 'RS256';
const kid = 'floor';
const { privateKey, publicKey } = generateKeys(alg);

function generateKeys(algorithm: string): { privateKey: KeyObject; publicKey: KeyObject } {
  if (algorithm === 'RS256') return generateKeyPairSync('rsa', { modulusLength: 2048 });
  if (algorithm === 'ES256') return generateKeyPairSync('ec', { namedCurve: 'P-256' });
  if (algorithm === 'EdDSA') return generateKeyPairSync('ed25519');
  throw new Error(`unknown ALG ${algorithm}`);
}

/** What the factory's issuance does for the bench's claims: defaults, times, jti, the signature. */
function issue(claims: JWTPayload): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: 'https://jwt-factory/', sub: 'bench', ...claims, iat: now, exp: now + 3600, jti: randomUUID() })
    .setProtectedHeader({ alg, kid, typ: 'JWT' })
    .sign(privateKey);
}

/** What the factory's /verify does: pinned alg, issuer, audience, subject, required exp. */
async function verify(body: { token: string; aud: string; sub: string }) {
  const { payload } = await jwtVerify(body.token, publicKey, { algorithms: [alg], issuer: 'https://jwt-factory/', audience: body.aud, subject: body.sub, requiredClaims: ['exp'], clockTolerance: 60 });
  return { valid: true, claims: payload };
}

/** Runs `op` with `inFlight` concurrent loops for `seconds`: throughput, latency, CPU per operation. */
async function measure(op: () => Promise<unknown>, inFlight: number, seconds: number) {
  const latencies: number[] = [];
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  const end = start + seconds * 1000;
  const loop = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await op();
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
  const elapsedS = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  return {
    rps: round(latencies.length / elapsedS, 0),
    p50Ms: round(percentile(latencies, 50), 2),
    p99Ms: round(percentile(latencies, 99), 2),
    requests: latencies.length,
    serverCpuMsPerRequest: round((cpu.user + cpu.system) / 1000 / Math.max(1, latencies.length), 3),
  };
}

const sendJson = (res: ServerResponse, status: number, body: unknown) => {
  const json = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(json) });
  res.end(json);
};

if (kind === 'bare') {
  const job = JSON.parse(await text(process.stdin)) as { inFlight: number; durationS: number; warmupS: number };
  const token = await issue(FLOOR_CLAIMS);
  const sign = () => issue(FLOOR_CLAIMS);
  const check = () => verify({ token, aud: FLOOR_CLAIMS.aud, sub: 'bench' });
  await measure(sign, job.inFlight, job.warmupS);
  const signed = await measure(sign, job.inFlight, job.durationS);
  await measure(check, job.inFlight, job.warmupS);
  const verified = await measure(check, job.inFlight, job.durationS);
  process.stdout.write(`${JSON.stringify({ issue: signed, verify: verified })}\n`);
} else {
  const port = Number(process.env.PORT ?? 0);
  let listener;
  if (kind === 'http') {
    // node:http alone: read the body, JSON.parse it, sign or verify, answer.
    listener = async (req: IncomingMessage, res: ServerResponse) => {
      try {
        if (req.method === 'GET' && req.url === '/token') return sendJson(res, 200, { token: await issue(FLOOR_CLAIMS) });
        const body = JSON.parse(await text(req));
        if (req.url === '/issue') {
          const token = await issue(body);
          res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(token) });
          return res.end(token);
        }
        if (req.url === '/verify') return sendJson(res, 200, await verify(body));
        sendJson(res, 404, { error: 'not found' });
      } catch {
        sendJson(res, 400, { error: 'bad request' });
      }
    };
  } else {
    // The framework floor: express 5 and its JSON body parser, the suite's framework.
    const app = express();
    app.disable('x-powered-by');
    app.use(express.json({ limit: '100kb' }));
    app.get('/token', async (_req, res) => {
      res.json({ token: await issue(FLOOR_CLAIMS) });
    });
    app.post('/issue', async (req, res) => {
      res.type('text/plain').send(await issue(req.body as JWTPayload));
    });
    app.post('/verify', async (req, res) => {
      res.json(await verify(req.body as { token: string; aud: string; sub: string }));
    });
    listener = app;
  }
  const server = createServer(listener);
  server.listen(port, '127.0.0.1', () => {
    const address = server.address();
    process.stdout.write(`${JSON.stringify({ msg: 'listening', port: typeof address === 'object' && address ? address.port : port, floor: kind })}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
