import { isIP } from 'node:net';
import { z } from 'zod';
import { ConfigError } from '../lib/errors.js';
import { parseEnv, serverLimitSettings, setting, type Env } from '../lib/config.js';
import { DEFAULT_CLOCK_TOLERANCE, MAX_TOKEN_BYTES } from '../lib/jwt.js';
import { KEY_ID_PATTERN } from '../lib/keyid.js';
import { DEFAULT_ISSUER } from '../lib/suite.js';
import { parseEncryptionKey } from './store/encryption.js';

/** Every signing algorithm a key can be created with (one per keyId, chosen at creation). */
export const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA', 'HS256'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

/** The algorithms whose public keys are published (HS256 secrets never leave the factory). */
export const PUBLIC_ALGORITHMS = ALGORITHMS.filter((a) => a !== 'HS256');

export const ISSUE_AUTH_MODES = ['open', 'client'] as const;
const isEncryptionKey = (text: string) => {
  try {
    parseEncryptionKey(text);
    return true;
  } catch {
    return false;
  }
};

const schema = z
  .object({
    PORT: setting.port(5555),
    // Loopback: a factory that mints for anyone must not be reachable from other machines by default.
    HOST: z.string().min(1).default('127.0.0.1'),
    KEYS_DIR: z.string().min(1).default('keys'),
    ISSUER: z.string().min(1, 'must not be empty').default(DEFAULT_ISSUER),
    // Unset: http://<HOST>:<PORT> (defaultPublicUrl), so jwks_uri names the address the factory listens on.
    // Port 0 is refused: it names no reachable address, and in the default it stands for the port not yet bound.
    PUBLIC_URL: z
      .string()
      .url('must be an absolute URL such as http://host:port')
      .refine((url) => !URL.canParse(url) || new URL(url).port !== '0', 'must not name port 0 (leave PUBLIC_URL unset with PORT=0: it then names the port the factory gets)')
      .optional(),
    ALGORITHM: z.enum(ALGORITHMS, { message: `must be one of ${ALGORITHMS.join(', ')}` }).default('RS256'),
    TOKEN_TTL: setting.seconds(3600, 1),
    MAX_TOKEN_TTL: setting.seconds(86_400, 1),
    CLOCK_TOLERANCE: setting.seconds(DEFAULT_CLOCK_TOLERANCE, 0, 3600),
    BODY_LIMIT: setting.byteSize('100kb'),
    // 60 s: a client that honours Cache-Control sees a rotated key within one clock-skew window.
    JWKS_MAX_AGE: setting.seconds(60, 0, 86_400),
    WORKERS: setting.integer(1, 1, 64),
    LOG_LEVEL: setting.logLevel(),
    TOKEN_SIZE_WARN: setting.integer(4096, 256, 1_048_576),
    TOKEN_SIZE_LIMIT: setting.integer(MAX_TOKEN_BYTES, 256, 1_048_576),
    TOKEN_SIZE_POLICY: z.enum(['warn', 'refuse'], { message: 'must be warn or refuse' }).default('warn'),
    SHUTDOWN_GRACE: setting.seconds(10, 0, 600),
    // 1260: istiod refetches jwksUri every 20 min (PILOT_JWT_PUB_KEY_REFRESH_INTERVAL) and never on an
    // unknown kid, so a new key must be published that long plus 60 s of skew before it signs.
    ROTATION_PUBLISH_AHEAD: setting.seconds(1260, 0, 86_400),
    // POST /mesh/evaluate with fetchJwks: true makes the factory fetch URLs a client chose: off unless trusted.
    MESH_FETCH_JWKS: setting.bool(false),
    // Unknown keyIds are created on first use (the original sample's contract): bound how many.
    MAX_KEYS: setting.integer(100_000, 1, 10_000_000),
    MESH_FETCH_TIMEOUT_MS: setting.integer(5000, 100, 60_000),
    // 5: a scheduled rotation publishes 3 at once (published ahead, signing, retiring); 2 more leave room for an emergency rotation.
    MAX_KEY_VERSIONS: setting.integer(5, 2, 100),
    // 1: one RSA generation holds one of libuv's 4 threads, leaving 3 for signing and verification with existing keys.
    KEYGEN_CONCURRENCY: setting.integer(1, 1, 16),
    // 32: about 3 s of RS256 generations waiting on one thread; beyond that a caller is better told to retry.
    KEYGEN_QUEUE: setting.integer(32, 0, 10_000),
    // Unset: no OpenID Connect provider, the factory answers exactly its legacy contract.
    OIDC_CONFIG: z.string().min(1).optional(),
    // A keyId of the store like any other, so its key is in the JWKS and rotates with the same calls.
    OIDC_KEY_ID: z.string().regex(KEY_ID_PATTERN, 'must match ^[A-Za-z0-9._-]{1,64}$').default('oidc'),
    // RS256: OIDC Core §15.1 makes it the one algorithm every relying party must accept.
    OIDC_ALG: z.enum(PUBLIC_ALGORITHMS as [Algorithm, ...Algorithm[]], { message: `must be one of ${PUBLIC_ALGORITHMS.join(', ')}` }).default('RS256'),
    // 8 h: a working day of single sign-on, after which the user logs in again.
    OIDC_SESSION_TTL: setting.seconds(28_800, 60, 2_592_000),
    // 5: OWASP's usual threshold; the delay then doubles from 30 s up to 15 min.
    OIDC_LOCKOUT_AFTER: setting.integer(5, 1, 1000),
    // Unset: open on a loopback HOST (the original sample's contract), client anywhere else.
    ISSUE_AUTH: z.enum(ISSUE_AUTH_MODES, { message: 'must be open or client' }).optional(),
    // Behind an Istio sidecar only: the caller's mTLS identity from X-Forwarded-Client-Cert authenticates
    // tls_client_auth clients (RFC 8705). Off, a request carrying the header is refused: without a sidecar
    // that rewrites it, anyone can write it.
    TRUST_XFCC: setting.bool(false),
    // The factory's own SPIFFE id: Envoy writes it as By in the element it appends, so it tells that
    // element (the last) from the ones a caller wrote before it.
    XFCC_BY: z.string().regex(/^spiffe:\/\/[^\s,;="]+$/, 'must be a SPIFFE id such as spiffe://cluster.local/ns/jwt-suite/sa/jwt-factory').optional(),
    // 3 s: with a generation of its own on top, a creation answers within the servers' 5-10 s timeouts even on a busy machine.
    KEYGEN_MAX_WAIT_MS: setting.integer(3000, 0, 600_000),
    // HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS, MAX_CONNECTIONS: the same on every server (their defaults say why).
    ...serverLimitSettings,
    // file: KEYS_DIR, nothing to run beside the factory. A postgres:// URL lets replicas share keys.
    KEY_STORE: z
      .string()
      .regex(/^(file|postgres(ql)?:\/\/.+)$/, 'must be file or a postgres:// URL')
      .default('file'),
    // No default: the key that seals private keys at rest must come from the operator (required with PostgreSQL).
    KEY_ENCRYPTION_KEY: z.string().refine(isEncryptionKey, 'must be 32 random bytes in base64 (openssl rand -base64 32)').optional(),
    KEY_ENCRYPTION_KEY_FILE: z.string().min(1).optional(),
    // The previous key, for reading only, while `npm run key-store -- re-encrypt` moves every key onto the new one.
    KEY_ENCRYPTION_KEY_OLD: z.string().refine(isEncryptionKey, 'must be 32 random bytes in base64 (openssl rand -base64 32)').optional(),
    // 5 s: LISTEN/NOTIFY carries changes at once; the re-read only catches a notification lost in a reconnect.
    KEY_STORE_POLL_INTERVAL: setting.seconds(5, 1, 3600),
    // 100: the first keyIds by creation get their own key_id series; the rest share one, so MAX_KEYS keys never make MAX_KEYS series.
    METRICS_KEY_LABELS: setting.integer(100, 0, 10_000),
    // 0 (off): a folder on a laptop should not change under its user; the manifests turn it on (7 days).
    ROTATION_INTERVAL: setting.seconds(0, 0, 31_536_000),
  })
  .superRefine((c, ctx) => {
    if (c.TOKEN_TTL > c.MAX_TOKEN_TTL) {
      ctx.addIssue({ code: 'custom', path: ['TOKEN_TTL'], message: `must not exceed MAX_TOKEN_TTL (${c.MAX_TOKEN_TTL})` });
    }
    if (c.ROTATION_INTERVAL > 0 && c.ROTATION_INTERVAL <= c.ROTATION_PUBLISH_AHEAD) {
      ctx.addIssue({ code: 'custom', path: ['ROTATION_INTERVAL'], message: `must exceed ROTATION_PUBLISH_AHEAD (${c.ROTATION_PUBLISH_AHEAD}): a key must sign for a while before the next one is published` });
    }
    if (c.KEY_ENCRYPTION_KEY !== undefined && c.KEY_ENCRYPTION_KEY_FILE !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['KEY_ENCRYPTION_KEY_FILE'], message: 'give KEY_ENCRYPTION_KEY or KEY_ENCRYPTION_KEY_FILE, not both' });
    }
    if (c.KEY_STORE !== 'file' && c.KEY_ENCRYPTION_KEY === undefined && c.KEY_ENCRYPTION_KEY_FILE === undefined) {
      ctx.addIssue({ code: 'custom', path: ['KEY_ENCRYPTION_KEY'], message: 'is required with a PostgreSQL KEY_STORE (the database never holds a plain private key): set it or KEY_ENCRYPTION_KEY_FILE' });
    }
    if (c.OIDC_CONFIG !== undefined && c.WORKERS > 1 && c.KEY_STORE === 'file') {
      ctx.addIssue({ code: 'custom', path: ['OIDC_CONFIG'], message: 'needs WORKERS=1 with the file KEY_STORE: the OIDC state file is owned by one process (a postgres:// KEY_STORE shares it between workers)' });
    }
    if (c.TRUST_XFCC && c.XFCC_BY === undefined) {
      ctx.addIssue({ code: 'custom', path: ['XFCC_BY'], message: "is required with TRUST_XFCC=true: the factory's own SPIFFE id, which its sidecar writes as By (spiffe://<trust domain>/ns/<namespace>/sa/<service account>)" });
    }
    if (!c.TRUST_XFCC && c.XFCC_BY !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['XFCC_BY'], message: 'is used only with TRUST_XFCC=true' });
    }
    if (c.TRUST_XFCC && c.OIDC_CONFIG === undefined) {
      ctx.addIssue({ code: 'custom', path: ['TRUST_XFCC'], message: 'needs OIDC_CONFIG: the identity authenticates its tls_client_auth clients' });
    }
    if (c.TOKEN_SIZE_WARN > c.TOKEN_SIZE_LIMIT) {
      ctx.addIssue({ code: 'custom', path: ['TOKEN_SIZE_WARN'], message: `must not exceed TOKEN_SIZE_LIMIT (${c.TOKEN_SIZE_LIMIT})` });
    }
  });

/** Who may mint tokens and manage keys: anyone (open), or authenticated clients of OIDC_CONFIG (client). */
export type IssueAuth = (typeof ISSUE_AUTH_MODES)[number];

export type FactoryConfig = Readonly<Omit<z.infer<typeof schema>, 'ISSUE_AUTH' | 'PUBLIC_URL'> & { ISSUE_AUTH: IssueAuth; PUBLIC_URL: string }>;

/** True when `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (bare === 'localhost' || bare === '::1') return true;
  return isIP(bare) === 4 && bare.startsWith('127.');
}

/**
 * PUBLIC_URL when none is set: the address the factory listens on, as a client on this machine
 * reaches it. A wildcard HOST (0.0.0.0, ::) listens on loopback too, so 127.0.0.1 stands for it;
 * an IPv6 address gets its brackets (RFC 3986 §3.2.2). With PORT=0 the port is not known before
 * listening: the URL says port 0 until `listeningConfig` puts in the one the server got.
 */
export function defaultPublicUrl(host: string, port: number): string {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  const name = bare === '0.0.0.0' || bare === '::' || bare === '' ? '127.0.0.1' : isIP(bare) === 6 ? `[${bare}]` : bare;
  return `http://${name}:${port}`;
}

/**
 * The config a listening factory serves with: a PUBLIC_URL left to its default with PORT=0 names
 * the port the server actually bound. An explicit PUBLIC_URL (never port 0, the schema refuses it)
 * is kept as given, and so is every config whose PORT was not 0.
 */
export function listeningConfig(config: FactoryConfig, port: number): FactoryConfig {
  if (config.PORT !== 0 || new URL(config.PUBLIC_URL).port !== '0') return config;
  return Object.freeze({ ...config, PUBLIC_URL: defaultPublicUrl(config.HOST, port) });
}

/** Every setting's name, in schema order (optional ones included, which a parsed config may lack). */
export const FACTORY_SETTINGS: readonly string[] = Object.keys(schema.shape);

/** Parses and validates the factory's settings from an env object; throws a ConfigError naming the variable. */
export function loadFactoryConfig(env: Env): FactoryConfig {
  const config = parseEnv(schema, env);
  const issueAuth = config.ISSUE_AUTH ?? (isLoopbackHost(config.HOST) ? 'open' : 'client');
  if (issueAuth === 'client' && config.OIDC_CONFIG === undefined) {
    const why = config.ISSUE_AUTH === undefined ? ` (the default when HOST ${config.HOST} is not loopback)` : '';
    throw new ConfigError('ISSUE_AUTH', `client${why} needs OIDC_CONFIG, the clients that may issue; set OIDC_CONFIG, or ISSUE_AUTH=open to let anyone who reaches the factory mint tokens`);
  }
  // jwks_uri is built by appending a path, so a trailing slash would double it.
  const publicUrl = config.PUBLIC_URL ?? defaultPublicUrl(config.HOST, config.PORT);
  return Object.freeze({ ...config, ISSUE_AUTH: issueAuth, PUBLIC_URL: publicUrl.replace(/\/+$/, '') });
}
