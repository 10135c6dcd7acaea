import type { JWK } from 'jose';
import type { Clock } from '../keys.js';
import type { KeyStore } from '../keystore.js';
import type { OidcConfig, TrustedIssuer } from './config.js';
import type { FailureLimiter } from './limiter.js';
import type { OidcStore } from './store.js';
import type { TokenSigner } from './tokens.js';

/** The absolute URLs of the provider's endpoints, under PUBLIC_URL. */
export interface Endpoints {
  authorization: string;
  login: string;
  token: string;
  userinfo: string;
  introspection: string;
  revocation: string;
  endSession: string;
  jwks: string;
}

/** Builds the endpoint URLs under `publicUrl` (no trailing slash). */
export function endpointsUnder(publicUrl: string): Endpoints {
  return {
    authorization: `${publicUrl}/authorize`,
    login: `${publicUrl}/login`,
    token: `${publicUrl}/token`,
    userinfo: `${publicUrl}/userinfo`,
    introspection: `${publicUrl}/introspect`,
    revocation: `${publicUrl}/revoke`,
    endSession: `${publicUrl}/logout`,
    jwks: `${publicUrl}/.well-known/jwks.json`,
  };
}

/** What every part of the provider works over: no HTTP, only data, the store, the keys and the clock. */
export interface ProviderContext {
  readonly config: OidcConfig;
  readonly store: OidcStore;
  readonly signer: TokenSigner;
  readonly issuer: string;
  readonly endpoints: Endpoints;
  readonly clock: Clock;
  /** Failed logins and client authentications, counted in the store (shared by replicas). */
  readonly limiter: FailureLimiter;
  /** Seconds a login session lasts. */
  readonly sessionTtl: number;
  /** Seconds of skew accepted on client assertions and id_token_hint. */
  readonly clockTolerance: number;
  /** Fetches a client's `jwks_uri` (injected so tests and the store of keys stay HTTP-free here). */
  readonly fetchJwks: (url: string) => Promise<JWK[]>;
  /** The factory's keys: a jwt-bearer grant signs with the mapped service's own keyId. */
  readonly keystore: KeyStore;
  /** A trusted issuer's JWKS, cached; `fresh` asks for a reload (an unknown kid after the issuer rotated). */
  readonly trustedJwks: (issuer: TrustedIssuer, fresh: boolean) => Promise<JWK[]>;
  /** The factory's SPIFFE id when TRUST_XFCC=true (X-Forwarded-Client-Cert is trusted); undefined: the header is refused. */
  readonly xfccBy: string | undefined;
}
