import * as client from 'openid-client';

/**
 * The gateway's side of OpenID Connect, as a confidential client of any issuer it discovers
 * (OIDC Discovery 1.0). Parsing of every answer and validation of the id token (signature,
 * iss, aud, exp, nonce; OIDC Core §3.1.3.7) are openid-client's; this module only chooses the
 * parameters: response_type=code with PKCE S256 (RFC 7636), state and nonce.
 */

/** The token endpoint's answer, reduced to what a session keeps. */
export interface IssuedTokens {
  accessToken: string;
  /** Absent on a refresh that issued no new id token (OIDC Core §12.2): keep the old one. */
  idToken?: string;
  refreshToken?: string;
  /** `expires_in` in seconds (RFC 6749 §5.1); undefined when the provider did not say. */
  expiresIn?: number;
  /** The validated id token's claims, when one came. */
  idClaims?: Record<string, unknown>;
}

/** What a login needs to remember until the callback. */
export interface LoginStart {
  url: URL;
  state: string;
  nonce: string;
  codeVerifier: string;
}

/** The OIDC calls the login makes; a test can stand in a fake. */
export interface OidcClient {
  /** A fresh authorization request (RFC 6749 §4.1.1 + PKCE + nonce). */
  startLogin(): Promise<LoginStart>;
  /** Exchanges the callback's code; validates state, PKCE and the id token. */
  finishLogin(callbackUrl: URL, expected: { state: string; nonce: string; codeVerifier: string }): Promise<IssuedTokens>;
  /** The refresh_token grant (RFC 6749 §6). */
  refresh(refreshToken: string): Promise<IssuedTokens>;
  /** RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2), or undefined when the issuer has no end_session_endpoint. */
  endSessionUrl(idToken: string | undefined, postLogoutRedirectUri: string): Promise<URL | undefined>;
}

export interface OidcClientOptions {
  issuer: URL;
  clientId: string;
  clientSecret: string;
  redirectUri: string;
  scope: string;
  /** How the secret travels to the token endpoint (RFC 6749 §2.3.1): HTTP Basic, which every server must support, or the form body. */
  clientAuth: 'client_secret_basic' | 'client_secret_post';
  /** Seconds each call to the provider may take. */
  timeoutSeconds: number;
}

/** An OAuth error the provider answered (invalid_grant and friends, RFC 6749 §5.2): the grant is gone. */
export function isProviderRefusal(err: unknown): boolean {
  return err instanceof client.ResponseBodyError || err instanceof client.AuthorizationResponseError;
}

/** The OAuth error code in a provider's refusal, or openid-client's own check code. */
export function refusalCode(err: unknown): string {
  if (err instanceof client.ResponseBodyError || err instanceof client.AuthorizationResponseError) return err.error;
  return (err as { code?: string }).code ?? 'login_failed';
}

const isLoopback = (host: string) => host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);

function issued(tokens: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers): IssuedTokens {
  return {
    accessToken: tokens.access_token,
    idToken: tokens.id_token,
    refreshToken: tokens.refresh_token,
    expiresIn: tokens.expires_in,
    idClaims: tokens.claims() as Record<string, unknown> | undefined,
  };
}

/**
 * The openid-client backed OidcClient. Discovery runs on first use and again after a failure,
 * so a gateway started before its issuer comes up recovers by itself.
 */
export function createOidcClient(options: OidcClientOptions): OidcClient {
  // openid-client refuses http issuers; loopback ones are allowed for local runs and tests
  // (RFC 8252 §8.3 treats loopback as a secure context), nothing else.
  const execute = options.issuer.protocol === 'http:' && isLoopback(options.issuer.host.replace(/:\d+$/, '')) ? [client.allowInsecureRequests] : [];
  let discovered: Promise<client.Configuration> | undefined;
  const config = (): Promise<client.Configuration> => {
    discovered ??= client
      .discovery(
        options.issuer,
        options.clientId,
        undefined,
        options.clientAuth === 'client_secret_post' ? client.ClientSecretPost(options.clientSecret) : client.ClientSecretBasic(options.clientSecret),
        { execute, timeout: options.timeoutSeconds },
      )
      .catch((err: unknown) => {
        discovered = undefined;
        throw err;
      });
    return discovered;
  };
  return {
    async startLogin() {
      const cfg = await config();
      const codeVerifier = client.randomPKCECodeVerifier();
      const state = client.randomState();
      const nonce = client.randomNonce();
      const url = client.buildAuthorizationUrl(cfg, {
        redirect_uri: options.redirectUri,
        scope: options.scope,
        code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: 'S256',
        state,
        nonce,
      });
      return { url, state, nonce, codeVerifier };
    },
    async finishLogin(callbackUrl, expected) {
      const tokens = await client.authorizationCodeGrant(await config(), callbackUrl, {
        pkceCodeVerifier: expected.codeVerifier,
        expectedState: expected.state,
        expectedNonce: expected.nonce,
        idTokenExpected: true,
      });
      return issued(tokens);
    },
    async refresh(refreshToken) {
      return issued(await client.refreshTokenGrant(await config(), refreshToken));
    },
    async endSessionUrl(idToken, postLogoutRedirectUri) {
      const cfg = await config();
      if (!cfg.serverMetadata().end_session_endpoint) return undefined;
      // Without a session there is no hint: client_id (added by openid-client) names the client.
      return client.buildEndSessionUrl(cfg, { ...(idToken ? { id_token_hint: idToken } : {}), post_logout_redirect_uri: postLogoutRedirectUri });
    },
  };
}
