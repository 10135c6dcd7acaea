import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './logger.js';

/** Idle keep-alive time of every server of the suite, longer than its clients' (Node's agents, autocannon, Envoy's 60 s). */
export const KEEP_ALIVE_MS = 65_000;

/**
 * Starts listening and resolves with the bound port (useful when `port` is 0). Idle sockets
 * stay open KEEP_ALIVE_MS: Node's 5 s default can close a socket a client is reusing, under
 * its request.
 */
export function listen(server: HttpServer, port: number, host: string): Promise<number> {
  server.keepAliveTimeout = KEEP_ALIVE_MS;
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
