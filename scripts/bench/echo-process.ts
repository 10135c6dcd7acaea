import { createServer } from 'node:http';

/**
 * The upstream of the gateway rows, as a process of its own so that its CPU is neither the
 * gateway's nor the load generator's: answers every request 200 with a small JSON body, the
 * way a workload behind its sidecar would. Listens on PORT and logs `{"msg":"listening","port":N}`.
 */
const body = JSON.stringify({ ok: true });
const server = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: typeof address === 'object' && address ? address.port : 0 })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
