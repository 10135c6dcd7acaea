import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { DEFAULT_LIMITS, parseEnv, serverLimitSettings, serverLimits, setting } from '../lib/config.js';
import { ConfigError } from '../lib/errors.js';
import { createLogger, errorFields } from '../lib/logger.js';
import { metricsListener } from '../lib/metrics.js';
import http from 'node:http';
import { describeListenError, drainOnSignal, listen } from '../lib/server.js';
import { UsageError, parseIstio, parseNow, parseWorkload } from './args.js';
import { DEFAULT_ISTIO, ISTIO_RANGE } from './istio/releases.js';
import { createGateway, type GatewayRules } from './gateway.js';
import { createGatewayMetrics } from './gateway-metrics.js';
import { LOGIN_ENV, LOGIN_FLAGS, LOGIN_HELP, parseLogin } from './login/args.js';
import { PolicyError } from './istio/policies.js';
import { startSidecar, type RunningSidecar } from './envoy/sidecar.js';
import { prepareSidecar } from './evaluate.js';
import { freePort } from '../lib/ports.js';
import { loadInputs, watchInputs } from './sources.js';

const HELP = `Usage: npm run mesh-gateway -- --policies <dir|file> --upstream <url> [options]

A local reverse proxy that enforces RequestAuthentication and AuthorizationPolicy YAML the way the
workload's Istio sidecar would: 401/403 with Envoy's body and www-authenticate, or the request
forwarded with the headers Envoy computes. Edits to the policy files and the --jwks-file are
picked up as they are saved (as istiod pushes new config); a broken edit keeps the previous rules.

  --policies <dir|file>     YAML/JSON with the policies (other kinds are ignored)      (required)
  --upstream <url>          where allowed requests go, e.g. http://127.0.0.1:3001      (required)
  --port <n>                port to listen on (0 picks a free one)                     (default 15001)
  --host <addr>             address to listen on                                       (default 127.0.0.1)
  --workload <k=v>          a label of the protected workload, repeatable             (default: all policies apply)
  --namespace <ns>          the workload's namespace                                   (default "default")
  --root-namespace <ns>     Istio's root namespace                                     (default istio-system)
  --source-principal <id>   mTLS identity assumed for every caller, e.g. cluster.local/ns/jwt-suite/sa/servicea
  --destination-port <n>    the workload's port in the cluster, for rules with ports    (default: the upstream's port)
  --jwks-file <file>        a JWKS, or a map of JWKS keyed by jwksUri or issuer (else jwksUri is fetched)
  --fetch-timeout <ms>      bound of one JWKS fetch                                    (default 5000)
  --ca <file>               extra CA (PEM) for an https upstream; TLS is always verified
  --now <ISO>               decide as if at this instant (replay a refusal); default the real clock
  --envoy <binary>          run this real Envoy as the sidecar instead of the engine (http upstream;
                            the listener is replaced in place on every reload)
  --istio <version>         the Istio release to model, ${ISTIO_RANGE} (e.g. 1.28, 1.29.1) (default ${DEFAULT_ISTIO})
  --metrics-port <n>        serve GET /metrics (Prometheus) on this port of --host, apart from the proxied
                            port as Istio's 15020 is (0 picks a free one)              (default: off)
  --help                    this text
${LOGIN_HELP}
Environment: LOG_LEVEL (default info), and the connection limits HEADERS_TIMEOUT_MS (${DEFAULT_LIMITS.headersTimeoutMs}),
REQUEST_TIMEOUT_MS (${DEFAULT_LIMITS.requestTimeoutMs}) and MAX_CONNECTIONS (${DEFAULT_LIMITS.maxConnections}), as on every server of the suite.
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      policies: { type: 'string' },
      upstream: { type: 'string' },
      port: { type: 'string', default: '15001' },
      host: { type: 'string', default: '127.0.0.1' },
      workload: { type: 'string', multiple: true },
      namespace: { type: 'string' },
      'root-namespace': { type: 'string' },
      'source-principal': { type: 'string' },
      'destination-port': { type: 'string' },
      'jwks-file': { type: 'string' },
      'fetch-timeout': { type: 'string', default: '5000' },
      ca: { type: 'string' },
      now: { type: 'string' },
      istio: { type: 'string' },
      envoy: { type: 'string' },
      'metrics-port': { type: 'string' },
      help: { type: 'boolean' },
      ...LOGIN_FLAGS,
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (!values.policies) throw new UsageError('--policies is required');
  if (!values.upstream) throw new UsageError('--upstream is required');
  let upstream: URL;
  try {
    upstream = new URL(values.upstream);
  } catch {
    throw new UsageError(`--upstream must be an absolute http(s) URL, got "${values.upstream}"`);
  }
  if (upstream.protocol !== 'http:' && upstream.protocol !== 'https:') throw new UsageError('--upstream must use http or https');
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0..65535, got "${values.port}"`);
  const destinationPort = values['destination-port'] === undefined ? undefined : Number(values['destination-port']);
  if (destinationPort !== undefined && (!Number.isInteger(destinationPort) || destinationPort < 1 || destinationPort > 65535)) {
    throw new UsageError(`--destination-port must be 1..65535, got "${values['destination-port']}"`);
  }
  const metricsPort = values['metrics-port'] === undefined ? undefined : Number(values['metrics-port']);
  if (metricsPort !== undefined && (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535)) {
    throw new UsageError(`--metrics-port must be 0..65535, got "${values['metrics-port']}"`);
  }
  const fetchTimeout = Number(values['fetch-timeout']);
  if (!Number.isFinite(fetchTimeout) || fetchTimeout <= 0) throw new UsageError('--fetch-timeout must be a positive number of ms');
  const workload = parseWorkload(values.workload, values.namespace);
  const fixedNow = parseNow(values.now);
  const istio = parseIstio(values.istio);
  if (values.envoy !== undefined) {
    if (upstream.protocol !== 'http:') throw new UsageError('--envoy needs an http:// upstream');
    if (values['source-principal'] !== undefined) throw new UsageError('--envoy sees no mTLS peer here: --source-principal works with the engine only');
    if (metricsPort !== undefined) throw new UsageError("--metrics-port counts the engine's decisions: with --envoy the real Envoy decides (its own counters are on its admin /stats/prometheus)");
  }
  const ca = values.ca ? await readFile(values.ca) : undefined;
  // Only main reads the environment.
  let env: { LOG_LEVEL: string; LOGIN_CLIENT_SECRET?: string; SESSION_STORE: string; SESSION_ENCRYPTION_KEY?: string; HEADERS_TIMEOUT_MS: number; REQUEST_TIMEOUT_MS: number; MAX_CONNECTIONS: number };
  try {
    env = parseEnv(z.object({ LOG_LEVEL: setting.logLevel(), ...LOGIN_ENV, ...serverLimitSettings }), process.env);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  const logger = createLogger({ level: env.LOG_LEVEL, name: 'mesh-gateway' });
  const rulesRef: { current: GatewayRules } = { current: { policies: [], jwks: {} } };
  const metrics =
    metricsPort === undefined
      ? undefined
      : createGatewayMetrics({ policies: () => rulesRef.current.policies, defaultNamespace: workload?.namespace ?? 'default', login: values['login-issuer'] !== undefined });
  const login = parseLogin(values, env, { logger, onEvent: metrics?.login });
  if (login && values.envoy !== undefined) throw new UsageError('--envoy runs the real Envoy alone: the login mode (--login-issuer) needs the engine');

  // One translation per load, shared by the engine and the real Envoy (istiod's push, not per request).
  const load = async (): Promise<Required<GatewayRules> & { digest: string }> => {
    const { policies, jwks, notes, digest } = await loadInputs(values.policies!, values['jwks-file'], { timeoutMs: fetchTimeout });
    for (const note of notes) logger.info({ note }, 'jwks');
    const sidecar = prepareSidecar({ policies, jwks, workload, rootNamespace: values['root-namespace'], istio });
    return { policies, jwks, digest, sidecar };
  };
  const first = await load();
  let version = 1;
  logger.info({ policies: first.policies.length, version, digest: first.digest }, 'policies loaded');

  rulesRef.current = first;
  let sidecar: RunningSidecar | undefined;
  let sidecarDir: string | undefined;
  if (values.envoy !== undefined) {
    sidecarDir = await mkdtemp(path.join(tmpdir(), 'mesh-gateway-envoy-'));
    const listenPort = port === 0 ? await freePort(values.host!) : port;
    const upstreamPort = Number(upstream.port || 80);
    sidecar = await startSidecar(first.sidecar.config, {
      binary: values.envoy,
      dir: sidecarDir,
      host: values.host!,
      port: listenPort,
      adminPort: await freePort(),
      upstream: { host: upstream.hostname, port: upstreamPort },
      logger,
    });
    logger.info({ port: listenPort, upstream: upstream.origin, workload, envoy: values.envoy }, 'listening');
  }
  const server = sidecar
    ? undefined
    : createGateway({
        rules: () => rulesRef.current,
        upstream,
        ca,
        workload,
        rootNamespace: values['root-namespace'],
        sourcePrincipal: values['source-principal'],
        destinationPort,
        now: fixedNow ? () => fixedNow : undefined,
        istio,
        logger,
        login,
        onDecision: metrics?.decided,
      });
  // Reloads run one at a time; a change during a reload triggers one more afterwards.
  let reloading: Promise<void> | undefined;
  let again = false;
  const reload = (): void => {
    if (reloading) {
      again = true;
      return;
    }
    reloading = load()
      .then(async (next) => {
        // The real sidecar takes the new listener before the reload counts as done.
        if (sidecar) await sidecar.apply(next.sidecar.config);
        rulesRef.current = next;
        version += 1;
        metrics?.reloaded('ok');
        logger.info({ policies: next.policies.length, version, digest: next.digest }, 'policies loaded');
      })
      .catch((err: unknown) => {
        metrics?.reloaded('failed');
        logger.error({ err: errorFields(logger, err) }, 'reload failed, keeping the previous policies');
      })
      .finally(() => {
        reloading = undefined;
        if (again) {
          again = false;
          reload();
        }
      });
  };
  const stopWatching = watchInputs([values.policies!, ...(values['jwks-file'] ? [values['jwks-file']] : [])], reload);
  if (sidecar) {
    // The real Envoy serves; SIGTERM stops it (it drains its own connections) and exits.
    const running = sidecar;
    const stopAll = async () => {
      stopWatching();
      await running.stop();
      if (sidecarDir) await rm(sidecarDir, { recursive: true, force: true });
      process.exit(0);
    };
    process.once('SIGTERM', () => void stopAll());
    process.once('SIGINT', () => void stopAll());
    return;
  }
  if (!server) return;
  // The metrics listener first: the "listening" line names both ports once both accept connections.
  const metricsServer = metrics && http.createServer(metricsListener(metrics.registry));
  let boundMetrics: number | undefined;
  if (metricsServer) {
    try {
      boundMetrics = await listen(metricsServer, metricsPort!, values.host!, serverLimits(env));
    } catch (err) {
      logger.error({ err: { message: describeListenError(err as NodeJS.ErrnoException, metricsPort!, values.host!) } }, 'cannot listen');
      process.exit(1);
    }
  }
  try {
    const bound = await listen(server, port, values.host!, serverLimits(env));
    logger.info({ port: bound, ...(boundMetrics === undefined ? {} : { metricsPort: boundMetrics }), upstream: upstream.origin, workload }, 'listening');
  } catch (err) {
    logger.error({ err: { message: describeListenError(err as NodeJS.ErrnoException, port, values.host!) } }, 'cannot listen');
    process.exit(1);
  }
  drainOnSignal(metricsServer ? [server, metricsServer] : [server], logger, 10_000, stopWatching);
}

main().catch((err: unknown) => {
  const code = (err as { code?: string }).code;
  const usage = err instanceof UsageError || code?.startsWith('ERR_PARSE_ARGS');
  process.stderr.write(`mesh-gateway: ${err instanceof Error ? err.message : String(err)}\n${usage ? `\n${HELP}` : ''}`);
  process.exit(usage || err instanceof PolicyError || code === 'ENOENT' ? 2 : 1);
});
