import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { childStopper } from '../../lib/process.js';

/**
 * A real Envoy process for the mesh tests: the bootstrap is written to a temporary file, Envoy
 * starts without hot restart (several may run at once), and its start-up log says when every
 * listener is bound. Also the two servers a sidecar talks to: an echo upstream that answers
 * with the path and headers it received, and an HTTP ext_authz authorizer that allows or denies.
 */

export interface RunningEnvoy {
  version: string;
  output: () => string;
  stop: () => Promise<number | null>;
}

/**
 * Resolves once every port accepts a TCP connection: Envoy's workers start listening just after
 * the "starting workers" line, so the first request could otherwise be refused.
 */
export async function waitForPorts(ports: readonly number[], timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const accepts = (port: number) =>
    new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
  for (const port of ports) {
    while (!(await accepts(port))) {
      if (Date.now() > deadline) throw new Error(`port ${port} did not accept connections within ${timeoutMs} ms`);
      await new Promise((r) => setImmediate(r));
    }
  }
}

/** Envoy's info line once its workers run, i.e. every static listener is bound (server.cc startWorkers). */
const STARTED = 'starting workers';

/** Starts Envoy on `bootstrap`; resolves once it logs that its workers (and listeners) started. */
export async function startEnvoy(binary: string, version: string, bootstrap: unknown, timeoutMs = 30_000): Promise<RunningEnvoy> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mesh-envoy-'));
  const file = path.join(dir, 'bootstrap.json');
  writeFileSync(file, JSON.stringify(bootstrap));
  const child = spawn(binary, ['-c', file, '--disable-hot-restart', '--concurrency', '1', '-l', 'info', '--log-format', '%l %v'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const stopChild = childStopper(child, 3000);
  const stop = async () => {
    const code = await stopChild();
    rmSync(dir, { recursive: true, force: true });
    return code;
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`envoy ${version} did not start within ${timeoutMs} ms:\n${out}`)), timeoutMs);
      const onData = (d: Buffer) => {
        out += d.toString();
        if (out.includes(STARTED)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`envoy ${version} exited with ${code}:\n${out}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { version, output: () => out, stop };
}

/** What the echo upstream received: the path and every header value, lower-case names, in order. */
export interface Echoed {
  path: string;
  headers: Record<string, string[]>;
}

/** Marks the echo upstream's answers, so a 200 from the upstream is told from one of Envoy's. */
export const ECHO_HEADER = 'x-mesh-echo';

/** The workload: answers 200 with the JSON of what it received. */
export function echoServer(): http.Server {
  return http.createServer((req, res) => {
    const headers: Record<string, string[]> = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const k = req.rawHeaders[i]!.toLowerCase();
      (headers[k] ??= []).push(req.rawHeaders[i + 1]!);
    }
    req.resume();
    const body = JSON.stringify({ path: req.url ?? '', headers } satisfies Echoed);
    res.writeHead(200, { 'content-type': 'application/json', [ECHO_HEADER]: '1' }).end(body);
  });
}

/** An ext_authz HTTP service: 200 allows the request, 403 (empty body) denies it. */
export function authorizerServer(decision: 'allow' | 'deny'): http.Server {
  return http.createServer((req, res) => {
    req.resume();
    res.writeHead(decision === 'allow' ? 200 : 403).end();
  });
}

/** Listens on a free loopback port; resolves with it. */
export function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
}

/** What a client saw from the sidecar, and what reached the upstream. */
export interface SidecarAnswer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
  echoed?: Echoed;
}

/** Sends one request as given (method, raw path, every header value) over HTTP or mTLS. */
export function send(
  port: number,
  req: { method: string; path: string; headers: Record<string, string | string[]> },
  agent?: http.Agent,
  secure?: { request: typeof http.request },
): Promise<SidecarAnswer> {
  const doRequest = secure?.request ?? http.request;
  return new Promise((resolve, reject) => {
    const r = doRequest({ host: '127.0.0.1', port, method: req.method, path: req.path, headers: req.headers, agent, setHost: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const echoed = res.headers[ECHO_HEADER] ? (JSON.parse(body) as Echoed) : undefined;
        resolve({ status: res.statusCode ?? 0, body: echoed ? '' : body, headers: res.headers, echoed });
      });
    });
    r.on('error', reject);
    r.end();
  });
}
