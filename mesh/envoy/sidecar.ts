import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { writeFileAtomic } from '../../lib/files.js';
import type { Logger } from '../../lib/logger.js';
import { childStopper } from '../../lib/process.js';
import { TYPE, type Json, type SidecarConfig } from '../translate/index.js';
import { cluster, renderListener } from './bootstrap.js';

/**
 * A real Envoy as the local sidecar (`mesh-gateway --envoy`): one inbound listener running the
 * translated filters, fed from a file (LDS over a watched directory, Envoy's
 * `path_config_source`), so a reload replaces the listener in place as istiod's push would.
 * Connections opened before a reload finish on the old filters and are closed within a second
 * (drain strategy immediate); new connections get the new ones.
 * CUSTOM providers are served by a local authorizer that allows, as the engine assumes.
 */

export interface SidecarOptions {
  binary: string;
  /** A private directory for the bootstrap and the listener file. */
  dir: string;
  host: string;
  port: number;
  adminPort: number;
  upstream: { host: string; port: number };
  logger: Logger;
}

export interface RunningSidecar {
  /** Writes the new listener and resolves once Envoy reports it applied. */
  apply: (config: SidecarConfig) => Promise<void>;
  stop: () => Promise<void>;
}

const LISTENER = 'inbound';
const AUTHZ_CLUSTER = 'local-ext-authz';

/** Points every CUSTOM provider's ext_authz at the local authorizer. */
function withLocalAuthorizer(config: SidecarConfig): SidecarConfig {
  return {
    ...config,
    httpFilters: config.httpFilters.map((f) => {
      if (f.typedConfig['@type'] !== TYPE.extAuthz) return f;
      const service = f.typedConfig.httpService as { serverUri: Json };
      return { ...f, typedConfig: { ...f.typedConfig, httpService: { ...service, serverUri: { ...service.serverUri, cluster: AUTHZ_CLUSTER } } } };
    }),
  };
}

function adminGet(port: number, p: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

/** listener_manager.lds.update_success / update_rejected from the admin API: listener files Envoy took or refused. */
async function ldsCounters(adminPort: number): Promise<{ success: number; rejected: number }> {
  const text = await adminGet(adminPort, '/stats?filter=listener_manager.lds.update_');
  const read = (name: string) => Number(new RegExp(`update_${name}: (\\d+)`).exec(text)?.[1] ?? 0);
  return { success: read('success'), rejected: read('rejected') };
}

const tick = () => new Promise((r) => setTimeout(r, 25));

/** Starts Envoy on the first config; resolves when its listener accepts connections. */
export async function startSidecar(first: SidecarConfig, options: SidecarOptions): Promise<RunningSidecar> {
  const { logger } = options;
  const authorizer = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200).end();
  });
  await new Promise<void>((r) => authorizer.listen(0, '127.0.0.1', r));
  const lds = path.join(options.dir, 'lds.json');
  const writeListener = (config: SidecarConfig) =>
    writeFileAtomic(
      lds,
      JSON.stringify({
        resources: [{ '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener', ...renderListener({ name: LISTENER, port: options.port, host: options.host, config: withLocalAuthorizer(config), accessLog: true }) }],
      }),
    );
  await writeListener(first);
  const bootstrap = {
    node: { id: 'mesh-gateway', cluster: 'mesh-gateway' },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: options.adminPort } } },
    dynamic_resources: { lds_config: { path_config_source: { path: lds, watched_directory: { path: options.dir } }, resource_api_version: 'V3' } },
    static_resources: { clusters: [cluster('upstream', options.upstream.port, options.upstream.host), cluster(AUTHZ_CLUSTER, (authorizer.address() as net.AddressInfo).port)] },
  };
  const bootstrapFile = path.join(options.dir, 'bootstrap.json');
  await writeFileAtomic(bootstrapFile, JSON.stringify(bootstrap));

  const child = spawn(options.binary, ['-c', bootstrapFile, '--disable-hot-restart', '--concurrency', '1', '--drain-strategy', 'immediate', '--drain-time-s', '1', '-l', 'warning', '--log-format', '%l %v'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stopChild = childStopper(child, 5000);
  let exited = false;
  child.once('exit', (code) => {
    exited = true;
    logger.error({ code }, 'envoy exited');
  });
  // Envoy's access log lines are JSON objects: they become the gateway's request lines.
  const forward = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      if (line.startsWith('{')) {
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logger.info({ method: entry.method, status: Number(entry.status), decidedBy: entry.details, durationMs: Number(entry.durationMs) }, 'request');
          continue;
        } catch {
          /* not an access log line */
        }
      }
      logger.warn({ envoy: line }, 'envoy');
    }
  };
  child.stdout.on('data', forward);
  child.stderr.on('data', forward);

  const stop = async () => {
    await stopChild();
    await new Promise((r) => authorizer.close(r));
  };
  // The listener is up when it accepts a connection (Envoy binds it once the file is loaded).
  const deadline = Date.now() + 30_000;
  const accepts = () =>
    new Promise<boolean>((resolve) => {
      const s = net.connect(options.port, options.host);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
  while (!(await accepts())) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`envoy did not start listening on ${options.host}:${options.port}`);
    }
    await tick();
  }

  const apply = async (config: SidecarConfig) => {
    const before = await ldsCounters(options.adminPort);
    await writeListener(config);
    const until = Date.now() + 10_000;
    for (;;) {
      const now = await ldsCounters(options.adminPort);
      if (now.rejected > before.rejected) throw new Error('envoy rejected the new listener and keeps the previous one (see its log lines)');
      if (now.success > before.success) return;
      if (Date.now() > until) throw new Error('envoy did not take the new listener within 10 s (see its log lines)');
      await tick();
    }
  };
  return { apply, stop };
}
