import type { JWK } from 'jose';
import type { Algorithm } from '../config.js';
import type { Clock } from '../keys.js';
import type { KeyStore } from '../keystore.js';
import { ASSERTION_ALGS, AUTH_METHODS, GRANT_TYPES, SCOPES, type OidcConfig } from './config.js';
import { endpointsUnder, type ProviderContext } from './context.js';
import { createTrustedJwks } from './jwtbearer.js';
import { createFailureLimiter } from './limiter.js';
import type { OidcStore } from './store.js';
import { SCOPE_CLAIMS, createTokenSigner } from './tokens.js';

export interface OidcProviderOptions {
  config: OidcConfig;
  store: OidcStore;
  keystore: KeyStore;
  /** The factory keyId whose key signs every OIDC token. */
  keyId: string;
  alg: Algorithm;
  issuer: string;
  publicUrl: string;
  clock: Clock;
  sessionTtl: number;
  /** Failures in a row before a username or a client is locked (OIDC_LOCKOUT_AFTER). */
  lockoutAfter: number;
  clockTolerance: number;
  /** Fetches a client's jwks_uri; default: a GET with a 5 s limit. */
  fetchJwks?: (url: string) => Promise<JWK[]>;
  /** TRUST_XFCC=true: the factory's own SPIFFE id (XFCC_BY); unset, X-Forwarded-Client-Cert is refused. */
  xfccBy?: string | undefined;
}

/** The provider: its context for the routes, and its discovery metadata. */
export interface OidcProvider {
  readonly context: ProviderContext;
  readonly alg: Algorithm;
  /** OIDC Discovery 1.0 §3 / RFC 8414 §2 members, merged into the factory's openid-configuration. */
  metadata(): Record<string, unknown>;
}

/** A client's jwks_uri, read with a time limit; the URL comes from OIDC_CONFIG, never from a request. */
async function defaultFetchJwks(url: string): Promise<JWK[]> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5000), redirect: 'error' });
  if (!response.ok) throw new Error(`jwks_uri answered ${response.status}`);
  const body = (await response.json()) as { keys?: unknown };
  return Array.isArray(body.keys) ? (body.keys as JWK[]) : [];
}

/**
 * Builds the provider: makes sure the signing key exists (created with `alg`, or refused when
 * an existing key of that keyId has another algorithm).
 */
export async function createOidcProvider(options: OidcProviderOptions): Promise<OidcProvider> {
  const { entry } = await options.keystore.getOrCreate(options.keyId, options.alg);
  if (entry.alg !== options.alg) throw new Error(`OIDC_KEY_ID ${options.keyId} is an ${entry.alg} key, not ${options.alg}: set OIDC_ALG=${entry.alg} or another OIDC_KEY_ID`);
  const endpoints = endpointsUnder(options.publicUrl);
  const jwksCache = new Map<string, { at: number; keys: JWK[] }>();
  const fetchJwks = options.fetchJwks ?? defaultFetchJwks;
  const context: ProviderContext = {
    config: options.config,
    store: options.store,
    signer: createTokenSigner(options.keystore, options.keyId, options.issuer),
    issuer: options.issuer,
    endpoints,
    clock: options.clock,
    limiter: createFailureLimiter({ store: options.store, threshold: options.lockoutAfter, clock: options.clock }),
    sessionTtl: options.sessionTtl,
    clockTolerance: options.clockTolerance,
    // Five minutes of caching: a client rotating its keys is seen soon, a flood of assertions fetches once.
    fetchJwks: async (url) => {
      const hit = jwksCache.get(url);
      const now = options.clock().getTime();
      if (hit && now - hit.at < 300_000) return hit.keys;
      const keys = await fetchJwks(url);
      jwksCache.set(url, { at: now, keys });
      return keys;
    },
    keystore: options.keystore,
    trustedJwks: createTrustedJwks({ fetchJwks, clock: options.clock }),
    xfccBy: options.xfccBy,
  };
  // tls_client_auth is offered only where it can succeed: behind a sidecar the factory trusts.
  const methods = AUTH_METHODS.filter((m) => m !== 'tls_client_auth' || options.xfccBy !== undefined);
  const claims = ['sub', 'iss', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'azp', 'at_hash', 'sid', ...Object.values(SCOPE_CLAIMS).flat()];
  for (const user of options.config.users.values()) for (const name of Object.keys(user.claims)) if (!claims.includes(name)) claims.push(name);
  const metadata = Object.freeze({
    authorization_endpoint: endpoints.authorization,
    token_endpoint: endpoints.token,
    userinfo_endpoint: endpoints.userinfo,
    introspection_endpoint: endpoints.introspection,
    revocation_endpoint: endpoints.revocation,
    end_session_endpoint: endpoints.endSession,
    scopes_supported: [...SCOPES],
    response_types_supported: ['code'],
    response_modes_supported: ['query', 'form_post'],
    grant_types_supported: [...GRANT_TYPES],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: methods,
    token_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGS],
    introspection_endpoint_auth_methods_supported: methods.filter((m) => m !== 'none'),
    introspection_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGS],
    revocation_endpoint_auth_methods_supported: methods,
    revocation_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGS],
    id_token_signing_alg_values_supported: [options.alg],
    subject_types_supported: ['public'],
    claims_supported: claims,
    claims_parameter_supported: false,
    request_parameter_supported: false,
    request_uri_parameter_supported: false,
    prompt_values_supported: ['none', 'login', 'consent', 'select_account'],
    authorization_response_iss_parameter_supported: true,
  });
  return { context, alg: options.alg, metadata: () => metadata };
}
