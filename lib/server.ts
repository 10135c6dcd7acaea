import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEFAULT_LIMITS, type ServerLimits } from './config.js';
import type { Logger } from './logger.js';

/** Idle keep-alive time of every server of the suite, longer than its clients' (Node's agents, autocannon, Envoy's 60 s). */
export const KEEP_ALIVE_MS = 65_000;

/**
 * Applies the connection limits: headers within `headersTimeoutMs`, the whole request within
 * `requestTimeoutMs` (Node answers 408 and closes), at most `maxConnections` sockets (Node
 * closes any beyond at once), keep-alive as before. Node checks the timeouts every
 * `connectionsCheckingInterval` (30 s by default, which would let a slow client stay half a
 * minute past its timeout); the check starts on 'listening', so setting it here takes effect.
 */
export function applyLimits(server: HttpServer, limits: ServerLimits): void {
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  // Node requires headersTimeout <= requestTimeout when both are set.
  server.requestTimeout = limits.requestTimeoutMs;
  server.headersTimeout = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs);
  server.maxConnections = limits.maxConnections;
  (server as HttpServer & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.min(1000, Math.ceil(server.headersTimeout / 2));
}

/**
 * Starts listening and resolves with the bound port (useful when `port` is 0). Idle sockets
 * stay open KEEP_ALIVE_MS: Node's 5 s default can close a socket a client is reusing, under
 * its request. The connection limits (applyLimits) are the suite's defaults unless given.
 */
export function listen(server: HttpServer, port: number, host: string, limits: ServerLimits = DEFAULT_LIMITS): Promise<number> {
  applyLimits(server, limits);
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}

/** Explains a listen failure in one sentence (a taken port is the common case). */
export function describeListenError(err: NodeJS.ErrnoException, port: number, host: string): string {
  if (err.code === 'EADDRINUSE') return `port ${port} on ${host} is already in use`;
  if (err.code === 'EACCES') return `no permission to listen on port ${port} on ${host}`;
  return `cannot listen on ${host}:${port}: ${err.message}`;
}

/**
 * On SIGTERM or SIGINT: stop accepting connections, let in-flight requests finish (up to
 * `graceMs`), close idle keep-alive sockets, then exit 0.
 */
export function drainOnSignal(servers: HttpServer[], logger: Logger, graceMs = 10_000, onClosed?: () => Promise<void> | void): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    const timer = setTimeout(() => {
      logger.warn({ graceMs }, 'grace period over, closing remaining connections');
      for (const s of servers) s.closeAllConnections();
    }, graceMs);
    timer.unref();
    Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeIdleConnections();
          }),
      ),
    )
      .then(() => onClosed?.())
      .then(() => {
        logger.info('stopped');
        process.exit(0);
      })
      .catch(() => process.exit(1));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
