import net from 'node:net';

/** What one raw request met: an HTTP status, or no answer at all. */
export type Outcome =
  | { kind: 'answer'; status: number; contentType: string; ms: number }
  | { kind: 'timeout'; ms: number }
  | { kind: 'closed'; ms: number; reason: string };

/** One request as bytes on the wire: the fuzzer writes what a hostile client could write. */
export interface RawRequest {
  method: string;
  /** The request target exactly as sent (percent-encoding untouched, maybe invalid). */
  target: string;
  headers: Array<[string, string]>;
  body: Buffer;
}

/** The bytes of a request; Content-Length is added unless the request carries its own framing. */
export function encodeRequest(req: RawRequest, host: string): Buffer {
  const names = new Set(req.headers.map(([n]) => n.toLowerCase()));
  const lines = [`${req.method} ${req.target} HTTP/1.1`, `Host: ${host}`, 'Connection: close'];
  for (const [name, value] of req.headers) lines.push(`${name}: ${value}`);
  if (!names.has('content-length') && !names.has('transfer-encoding')) lines.push(`Content-Length: ${req.body.length}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), req.body]);
}

/**
 * Sends one request on a fresh socket and reads the status line and Content-Type of the
 * answer. `timeout` when nothing arrives within `timeoutMs` (a stall), `closed` when the server
 * hangs up without an answer (Node does that only for requests it cannot parse at all).
 */
export function sendRaw(port: number, req: RawRequest, timeoutMs: number, host = '127.0.0.1'): Promise<Outcome> {
  const started = performance.now();
  const ms = () => Math.round((performance.now() - started) * 100) / 100;
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    let head = '';
    let settled = false;
    const finish = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout', ms: ms() }), timeoutMs);
    socket.on('connect', () => socket.end(encodeRequest(req, `${host}:${port}`)));
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0 && head.length < 65_536) return;
      const [statusLine = '', ...headerLines] = head.slice(0, end < 0 ? undefined : end).split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? NaN);
      const contentType = headerLines.find((l) => /^content-type:/i.test(l))?.slice('content-type:'.length).trim() ?? '';
      if (Number.isInteger(status)) finish({ kind: 'answer', status, contentType, ms: ms() });
      else finish({ kind: 'closed', ms: ms(), reason: `not HTTP: ${JSON.stringify(statusLine.slice(0, 40))}` });
    });
    // EPIPE / ECONNRESET after the server answered early (413 before the whole body) still counts the answer.
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (head.includes('\r\n\r\n')) return;
      finish({ kind: 'closed', ms: ms(), reason: err.code ?? err.message });
    });
    socket.on('end', () => finish({ kind: 'closed', ms: ms(), reason: 'closed without an answer' }));
  });
}
