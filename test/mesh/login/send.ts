import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, jwtVerify } from 'jose';

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

/**
 * An upstream that admits only a valid bearer token of `issuer` for `serviceb` (keys from the
 * issuer's JWKS) and answers `{ user: sub }`, else 401 `token_invalid`: what the gateway's calls reach.
 */
export function bearerUpstream(issuer: string): http.RequestListener {
  const jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`));
  return async (req, res) => {
    req.resume();
    try {
      const { payload } = await jwtVerify(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '', jwks, { issuer, audience: 'serviceb' });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ user: payload.sub }));
    } catch {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end('{"error":"token_invalid"}');
    }
  };
}
