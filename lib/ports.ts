import { createServer, type AddressInfo } from 'node:net';

/** Ports this process already handed out: the system may offer a just-closed port again. */
const handedOut = new Set<number>();

/**
 * A port free on `host` right now, for processes that must know each other's port before they
 * start (servicea needs serviceb's, and serviceb servicea's). Never the same port twice in one
 * process: several calls in a row would otherwise, now and then, get a port back that an earlier
 * call returned, and two servers would race for it.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, host, () => {
        const { port: bound } = srv.address() as AddressInfo;
        srv.close(() => resolve(bound));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}
