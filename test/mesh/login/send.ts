import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One plain HTTP request (no agent, no redirects followed), answered as status, headers and text. */
export function send(url: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const r = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    r.on('error', reject);
    r.end();
  });
}

/** Servers a test file started, listened on loopback and closed together. */
export function serverPool(): { serve(server: http.Server, port?: number): Promise<number>; closeAll(): Promise<void> } {
  const servers: http.Server[] = [];
  return {
    async serve(server, port = 0) {
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
      return (server.address() as AddressInfo).port;
    },
    async closeAll() {
      for (const s of servers.splice(0)) {
        s.closeAllConnections();
        await new Promise((resolve) => s.close(resolve));
      }
    },
  };
}
