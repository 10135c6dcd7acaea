import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
// @ts-ignore oidc-provider ships no type declarations
import Provider from 'oidc-provider';

/**
 * panva's oidc-provider (a certified OpenID Provider) on a free loopback port, as the issuer a
 * test logs in at: one confidential client (authorization_code + refresh_token, PKCE), the
 * development login form (any password), consent skipped, RFC 9068 JWT access tokens for one
 * resource, RP-initiated logout. Its clock is the real one.
 */

export interface TestProvider {
  issuer: string;
  /** The issuer's public JWKS, for rules and backends that verify its tokens. */
  jwks: { keys: Record<string, unknown>[] };
  /** The `aud` of its access tokens. */
  audience: string;
  close(): Promise<void>;
}

export interface TestProviderOptions {
  /** Host in the issuer URL: `localhost` puts the provider on another site than 127.0.0.1. */
  host?: string;
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  /** Access token lifetime in seconds. */
  accessTokenTtl: number;
  /** How the client authenticates at the token endpoint (default client_secret_basic; `none` for a public client). */
  tokenEndpointAuthMethod?: 'client_secret_basic' | 'none';
  /** Offer the device authorization grant (RFC 8628) too: its endpoint in discovery, the grant for the client. */
  deviceFlow?: boolean;
}

const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';

const RESOURCE = 'urn:jwt-suite:webui-api';

/** Starts the provider; `close` stops it. */
export async function startTestProvider(options: TestProviderOptions): Promise<TestProvider> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), alg: 'RS256', use: 'sig', kid: 'test-provider-1' };
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = jwk;
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://${options.host ?? 'localhost'}:${(server.address() as AddressInfo).port}`;
  const audience = 'webui-api';
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: options.clientId,
        ...(options.tokenEndpointAuthMethod === 'none' ? {} : { client_secret: options.clientSecret }),
        redirect_uris: options.redirectUris,
        post_logout_redirect_uris: options.postLogoutRedirectUris,
        grant_types: ['authorization_code', 'refresh_token', ...(options.deviceFlow ? [DEVICE_CODE] : [])],
        response_types: ['code'],
        token_endpoint_auth_method: options.tokenEndpointAuthMethod ?? 'client_secret_basic',
      },
    ],
    jwks: { keys: [jwk] },
    cookies: { keys: ['a test provider cookie key, never a real one'] },
    claims: { openid: ['sub'], profile: ['name'], email: ['email'] },
    // The profile claims in the id token too, as the gateway's claim headers read them from it.
    conformIdTokenClaims: false,
    findAccount: async (_ctx: unknown, id: string) => ({
      accountId: id,
      claims: async () => ({ sub: id, name: `${id[0]!.toUpperCase()}${id.slice(1)} Liddell`, email: `${id}@example.com` }),
    }),
    pkce: { required: () => true },
    issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(g: string): boolean }) => client.grantTypeAllowed('refresh_token'),
    ttl: { AccessToken: options.accessTokenTtl, IdToken: 3600, RefreshToken: 86_400, Interaction: 600, Session: 86_400, Grant: 86_400 },
    // A first-party client: consent is implied (oidc-provider's "skip consent" recipe).
    loadExistingGrant: async (ctx: any) => {
      const grantId = ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid profile email offline_access');
      grant.addResourceScope(RESOURCE, 'api');
      await grant.save();
      return grant;
    },
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: options.deviceFlow === true },
      rpInitiatedLogout: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({ scope: 'api', audience, accessTokenTTL: options.accessTokenTtl, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }),
      },
    },
  });
  server.on('request', provider.callback());
  return {
    issuer,
    jwks: { keys: [publicJwk] },
    audience,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
