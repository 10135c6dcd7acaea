import { z } from 'zod';
import { parseEnv, serverLimitSettings, serverLimits, setting, type Env, type ServerLimits } from '../lib/config.js';
import { DEFAULT_ISSUER } from '../lib/suite.js';
import { DEFAULT_VERIFY_CACHE_SIZE } from './verifycache.js';
import type { FactoryCredential } from './factoryauth.js';

/** The three roles one service process can play. */
export const SERVICE_NAMES = ['servicea', 'serviceb', 'servicec'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

/**
 * Default HTTP ports, as in the suite's design (../shared/DESIGN.md) and the README. The HTTPS ports (8443 on B, 9443 on C) come from
 * `app/.serviceb.env` / `.servicec.env`: an empty or absent HTTPS_PORT means no HTTPS listener.
 */
const DEFAULT_PORTS: Record<ServiceName, number> = { servicea: 3000, serviceb: 3001, servicec: 3002 };

/** setting.url with a fallback always yields a string; its declared type also allows undefined. */
const url = (fallback: string) => setting.url(fallback) as z.ZodDefault<z.ZodString>;

const schema = (name: ServiceName) =>
  z.object({
    PORT: setting.port(DEFAULT_PORTS[name]),
    // Empty or absent: no HTTPS listener. parseEnv treats an empty value as absent.
    HTTPS_PORT: setting.port(0).unwrap().optional(),
    HOST: z.string().default('0.0.0.0'),
    FACTORY_URL: url('http://localhost:5555'),
    // Unset: servicea calls /issueToken anonymously, as a factory with ISSUE_AUTH=open accepts.
    FACTORY_CLIENT_ID: z.string().min(1).optional(),
    FACTORY_CLIENT_SECRET: z.string().min(1).optional(),
    // The cluster's credential instead of a secret: the projected service-account token's file.
    FACTORY_ASSERTION_FILE: z.string().min(1).optional(),
    ISSUER: z.string().min(1).default(DEFAULT_ISSUER),
    SERVICEA_URL: url('http://localhost:3000'),
    SERVICEB_URL: url('http://localhost:3001'),
    SERVICEC_URL: url('http://localhost:3002'),
    SERVICEB_HTTPS_URL: url('https://localhost:8443'),
    SERVICEC_HTTPS_URL: url('https://localhost:9443'),
    SELF_ISSUER: z.string().min(1).default('https://servicea/'),
    SELF_TOKEN_TTL: setting.seconds(300, 1, 86_400),
    SERVICE_KEYS_DIR: z.string().min(1).default('keys/servicea-self'),
    PEER_KEYS_SOURCE: z.enum(['jwks', 'dir'], { message: 'must be jwks or dir' }).default('jwks'),
    PEER_KEYS_DIR: z.string().min(1).default('keys/servicea-self'),
    CERTS_DIR: z.string().min(1).default('certs'),
    UPSTREAM_TIMEOUT_MS: setting.integer(3000, 50, 120_000),
    CLOCK_TOLERANCE: setting.seconds(60, 0, 600),
    // Envoy's jwt_authn cache holds 100 verified tokens by default; 0 verifies every token.
    VERIFY_CACHE_SIZE: setting.integer(DEFAULT_VERIFY_CACHE_SIZE, 0, 100_000),
    LOG_LEVEL: setting.logLevel(),
    // servicea's client at the factory's OpenID Connect provider (scenario 7's token exchange).
    OIDC_CLIENT_ID: z.string().min(1).default('servicea'),
    // No default: a secret never lives in a committed file; without it scenario 7 answers 409.
    OIDC_CLIENT_SECRET: z.string().min(1).optional(),
    // tls_client_auth (RFC 8705): in a mesh the exchange is authenticated by servicea's mTLS identity,
    // which the factory's sidecar reports (TRUST_XFCC on the factory); no secret at all.
    OIDC_CLIENT_AUTH: z.enum(['client_secret_basic', 'tls_client_auth'], { message: 'must be client_secret_basic or tls_client_auth' }).default('client_secret_basic'),
    ...serverLimitSettings,
    // Scenarios 5 and 6 send the user's token to serviceb through its sidecar. In a cluster the
    // sidecar is transparent, so the default is SERVICEB_URL; the demo points it at mesh-gateway.
    SERVICEB_MESH_URL: setting.url(),
    // The client the scenario 6 id tokens are for (their aud, OIDC Core §2): the password-grant
    // client `cli` of jwt-factory/oidc.demo.yaml.
    ID_TOKEN_AUDIENCE: z.string().min(1).default('cli'),
  })
  .superRefine((e, ctx) => {
    if (e.FACTORY_ASSERTION_FILE !== undefined && e.FACTORY_CLIENT_SECRET !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['FACTORY_ASSERTION_FILE'], message: 'give FACTORY_ASSERTION_FILE or FACTORY_CLIENT_SECRET, not both (an empty FACTORY_CLIENT_SECRET= unsets the .env one)' });
    }
    if (e.OIDC_CLIENT_AUTH === 'tls_client_auth' && e.OIDC_CLIENT_SECRET !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['OIDC_CLIENT_SECRET'], message: 'is not used with OIDC_CLIENT_AUTH=tls_client_auth (the mTLS identity is the credential): unset one' });
    }
    if (e.FACTORY_CLIENT_SECRET !== undefined && e.FACTORY_CLIENT_ID === undefined) {
      ctx.addIssue({ code: 'custom', path: ['FACTORY_CLIENT_ID'], message: 'is required with FACTORY_CLIENT_SECRET' });
    }
  });

/** The frozen settings of one service process. */
export interface ServiceConfig {
  serviceName: ServiceName;
  port: number;
  /** undefined: no HTTPS listener. */
  httpsPort: number | undefined;
  host: string;
  factoryUrl: string;
  /** servicea's credential at the factory (ISSUE_AUTH=client): a client secret, or a projected token's file; undefined: anonymous. */
  factoryCredential: FactoryCredential | undefined;
  issuer: string;
  /** Plain-HTTP base URLs of the three services (servicea's also serves its JWKS). */
  urls: Record<ServiceName, string>;
  /** HTTPS base URLs of the receivers of scenarios 3 and 4. */
  httpsUrls: { serviceb: string; servicec: string };
  selfIssuer: string;
  selfTokenTtl: number;
  serviceKeysDir: string;
  peerKeysSource: 'jwks' | 'dir';
  peerKeysDir: string;
  certsDir: string;
  upstreamTimeoutMs: number;
  clockTolerance: number;
  /** Successful local verifications remembered (0: none). */
  verifyCacheSize: number;
  logLevel: string;
  /** serviceb as scenario 6 reaches it: through its sidecar (mesh-gateway in the demo). */
  servicebMeshUrl: string;
  /** The `aud` of the id tokens serviceb accepts in scenario 6. */
  idTokenAudience: string;
  /** servicea's OIDC client (scenario 7); `secret` undefined when not configured or with tls_client_auth. */
  oidcClient: { id: string; secret: string | undefined; method: 'client_secret_basic' | 'tls_client_auth' };
  /** Connection limits of its HTTP and HTTPS servers (HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS, MAX_CONNECTIONS). */
  limits: ServerLimits;
}

/** Narrows a command-line word to a service name, or throws an error listing the choices. */
export function assertServiceName(name: string | undefined): ServiceName {
  if (name && (SERVICE_NAMES as readonly string[]).includes(name)) return name as ServiceName;
  throw new Error(
    name ? `unknown service "${name}": it must be one of ${SERVICE_NAMES.join(', ')}` : `which service? Name one of ${SERVICE_NAMES.join(', ')} (npm run servicea)`,
  );
}

/** The one credential the settings name (the schema refuses two). */
function factoryCredential(e: { FACTORY_CLIENT_ID?: string; FACTORY_CLIENT_SECRET?: string; FACTORY_ASSERTION_FILE?: string }): FactoryCredential | undefined {
  if (e.FACTORY_ASSERTION_FILE !== undefined) return Object.freeze({ kind: 'assertion', file: e.FACTORY_ASSERTION_FILE });
  if (e.FACTORY_CLIENT_ID !== undefined && e.FACTORY_CLIENT_SECRET !== undefined) return Object.freeze({ kind: 'secret', id: e.FACTORY_CLIENT_ID, secret: e.FACTORY_CLIENT_SECRET });
  return undefined;
}

/** Trailing slashes would double up when paths are appended. */
const base = (url: string) => url.replace(/\/+$/, '');

/**
 * Parses the settings of one service from an environment object (pure: main merges the
 * process environment over `app/.<service>.env` and passes the result).
 */
export function loadServiceConfig(serviceName: ServiceName, env: Env): Readonly<ServiceConfig> {
  const e = parseEnv(schema(serviceName), env);
  return Object.freeze({
    serviceName,
    port: e.PORT,
    httpsPort: e.HTTPS_PORT,
    host: e.HOST,
    factoryUrl: base(e.FACTORY_URL),
    factoryCredential: factoryCredential(e),
    issuer: e.ISSUER,
    urls: Object.freeze({ servicea: base(e.SERVICEA_URL), serviceb: base(e.SERVICEB_URL), servicec: base(e.SERVICEC_URL) }),
    httpsUrls: Object.freeze({ serviceb: base(e.SERVICEB_HTTPS_URL), servicec: base(e.SERVICEC_HTTPS_URL) }),
    selfIssuer: e.SELF_ISSUER,
    selfTokenTtl: e.SELF_TOKEN_TTL,
    serviceKeysDir: e.SERVICE_KEYS_DIR,
    peerKeysSource: e.PEER_KEYS_SOURCE,
    peerKeysDir: e.PEER_KEYS_DIR,
    certsDir: e.CERTS_DIR,
    upstreamTimeoutMs: e.UPSTREAM_TIMEOUT_MS,
    clockTolerance: e.CLOCK_TOLERANCE,
    verifyCacheSize: e.VERIFY_CACHE_SIZE,
    logLevel: e.LOG_LEVEL,
    servicebMeshUrl: base(e.SERVICEB_MESH_URL ?? e.SERVICEB_URL),
    idTokenAudience: e.ID_TOKEN_AUDIENCE,
    oidcClient: Object.freeze({ id: e.OIDC_CLIENT_ID, secret: e.OIDC_CLIENT_SECRET, method: e.OIDC_CLIENT_AUTH }),
    limits: serverLimits(e),
  });
}
