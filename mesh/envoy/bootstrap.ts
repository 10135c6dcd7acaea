import { extAuthzCluster, type Json, type SidecarConfig } from '../translate/index.js';

/**
 * Renders translated SidecarConfigs into one static Envoy bootstrap: per config an inbound
 * listener whose HTTP connection manager runs the config's filters then the router to the
 * local upstream, as the sidecar's inbound listener does (istio/istio
 * pilot/pkg/networking/core/listener_builder.go; path normalisation as meshConfig
 * pathNormalization BASE). With `tls`, the listener demands a client certificate from the CA
 * (Istio's ISTIO_MUTUAL), so RBAC `principals` see the peer's SPIFFE URI SAN.
 */

/** The material of a listener that requires mTLS (PEM text). */
export interface ListenerTls {
  certPem: string;
  keyPem: string;
  caPem: string;
}

/** One listener of the bootstrap. */
export interface ListenerSpec {
  name: string;
  port: number;
  config: SidecarConfig;
  tls?: ListenerTls;
  /** Listen address, default 127.0.0.1. */
  host?: string;
  /** One JSON access-log line per request on stdout (method, status, Envoy's response code details; never the path or a token). */
  accessLog?: boolean;
}

export interface BootstrapOptions {
  adminPort: number;
  /** Where forwarded requests go (the workload). */
  upstreamPort: number;
  /** The port of each CUSTOM provider's HTTP authorizer, by provider name. */
  extAuthzPorts?: Record<string, number>;
  listeners: readonly ListenerSpec[];
}

const LOOPBACK = '127.0.0.1';

/** A static cluster of one loopback (or given) endpoint. */
export function cluster(name: string, port: number, address = LOOPBACK): Json {
  return {
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address, port_value: port } } } }] }] },
  };
}

function downstreamTls(tls: ListenerTls): Json {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
      require_client_certificate: true,
      common_tls_context: {
        tls_certificates: [{ certificate_chain: { inline_string: tls.certPem }, private_key: { inline_string: tls.keyPem } }],
        validation_context: { trusted_ca: { inline_string: tls.caPem } },
      },
    },
  };
}

/** Envoy's file access logger on stdout, one JSON object per request. */
const ACCESS_LOG = {
  name: 'envoy.access_loggers.stdout',
  typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
    log_format: { json_format: { msg: 'request', method: '%REQ(:METHOD)%', status: '%RESPONSE_CODE%', details: '%RESPONSE_CODE_DETAILS%', durationMs: '%DURATION%' } },
  },
};

/** One inbound listener: the config's HTTP filters, then the router to the `upstream` cluster. */
export function renderListener(spec: ListenerSpec): Json {
  const hcm = {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    stat_prefix: spec.name,
    codec_type: 'AUTO',
    ...(spec.accessLog ? { access_log: [ACCESS_LOG] } : {}),
    normalize_path: true,
    // Istio's inbound listener: the client sidecar's x-forwarded-proto is kept; the peer identity goes upstream.
    use_remote_address: false,
    forward_client_cert_details: 'APPEND_FORWARD',
    set_current_client_cert_details: { subject: true, dns: true, uri: true },
    route_config: { name: spec.name, virtual_hosts: [{ name: 'inbound', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'upstream', timeout: '5s' } }] }] },
    http_filters: [
      ...spec.config.httpFilters.map((f) => ({ name: f.name, typed_config: f.typedConfig })),
      { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
    ],
  };
  return {
    name: spec.name,
    address: { socket_address: { address: spec.host ?? LOOPBACK, port_value: spec.port } },
    filter_chains: [{ ...(spec.tls ? { transport_socket: downstreamTls(spec.tls) } : {}), filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }],
  };
}

/** The bootstrap as JSON (Envoy reads JSON as YAML): listeners, the upstream and authorizer clusters, admin on loopback. */
export function renderBootstrap(options: BootstrapOptions): Json {
  const providers = new Set<string>();
  for (const l of options.listeners) {
    for (const f of l.config.httpFilters) {
      if (f.name !== 'envoy.filters.http.ext_authz') continue;
      const uri = (f.typedConfig.httpService as { serverUri: { cluster: string } }).serverUri.cluster;
      providers.add(uri);
    }
  }
  const authzClusters = [...providers].map((name) => {
    const provider = name.slice(extAuthzCluster('').length);
    const port = options.extAuthzPorts?.[provider];
    if (port === undefined) throw new Error(`no authorizer port for CUSTOM provider "${provider}"`);
    return cluster(name, port);
  });
  return {
    admin: { address: { socket_address: { address: LOOPBACK, port_value: options.adminPort } } },
    static_resources: { listeners: options.listeners.map(renderListener), clusters: [cluster('upstream', options.upstreamPort), ...authzClusters] },
  };
}
