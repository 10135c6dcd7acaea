import { z } from 'zod';
import type { Logger } from '../../lib/logger.js';
import { UsageError } from '../args.js';
import { defaultCookieName } from './cookie.js';
import { createLogin, type ClaimHeader, type LoginEvent, type LoginHook } from './handler.js';
import { createOidcClient } from './oidc.js';
import { parseEncryptionKey } from '../../lib/sealing.js';
import { createMemorySessionStore, type SessionStore } from './store.js';
import { createPostgresSessionStore } from './store-postgres.js';

/** `mesh-gateway`'s login flags: parseArgs options, help lines and the parse into a LoginHook. */

/** parseArgs options of the login mode. */
export const LOGIN_FLAGS = {
  'login-issuer': { type: 'string' },
  'login-client-id': { type: 'string' },
  'public-url': { type: 'string' },
  'login-scope': { type: 'string', default: 'openid profile email offline_access' },
  'login-client-auth': { type: 'string', default: 'client_secret_basic' },
  'login-api-prefix': { type: 'string', multiple: true },
  'login-id-token-header': { type: 'string' },
  'login-access-token-header': { type: 'string' },
  'login-claim-header': { type: 'string', multiple: true },
  'login-callback-path': { type: 'string', default: '/callback' },
  'login-logout-path': { type: 'string', default: '/logout' },
  'session-cookie': { type: 'string' },
  'session-lifetime': { type: 'string', default: '28800' },
  'session-idle': { type: 'string', default: '1800' },
  'session-max': { type: 'string', default: '10000' },
  'login-refresh-ahead': { type: 'string', default: '30' },
} as const;

/** The help lines of the login mode. */
export const LOGIN_HELP = `
Login at the gateway (token handler / BFF); on when --login-issuer is given. The client secret
comes from the environment variable LOGIN_CLIENT_SECRET, never from the command line.
  --login-issuer <url>          the OpenID Connect issuer, discovered at <url>/.well-known/openid-configuration;
                                or that document's own URL when the issuer is no URL to fetch (e.g. https://jwt-factory/)
  --login-client-id <id>        this gateway's client_id at the issuer                  (required with --login-issuer)
  --public-url <url>            the origin browsers use, e.g. https://webui.example     (required with --login-issuer)
                                (redirect_uri = <url><callback path>; https makes the cookie Secure and __Host-)
  --login-scope <scopes>        scopes asked for                                        (default "openid profile email offline_access")
  --login-client-auth <m>       client_secret_basic or client_secret_post                (default client_secret_basic)
  --login-api-prefix <path>     requests under it get 401 JSON, never a redirect, repeatable (default /api/)
  --login-id-token-header <h>   forward the id token in this header too (Gloo's idTokenHeader)
  --login-access-token-header <h> forward the access token in this header too (Gloo's accessTokenHeader)
  --login-claim-header <c=h>    forward id token claim c in header h, repeatable (Gloo's claimsToHeaders)
  --login-callback-path <p>     the redirect_uri's path                                 (default /callback)
  --login-logout-path <p>       ends the gateway session and the provider's            (default /logout)
  --session-cookie <name>       the session cookie's name               (default __Host-mesh-session, mesh-session on http)
  --session-lifetime <s>        absolute session lifetime in seconds                    (default 28800, a working day)
  --session-idle <s>            a session unused this long ends                         (default 1800)
  --session-max <n>             sessions kept at most, and as many logins under way, in memory
                                or in PostgreSQL; the least recently used go first      (default 10000)
  --login-refresh-ahead <s>     refresh the access token this many seconds before it expires (default 30)
Where sessions live comes from the environment too (a database URL may hold a password):
  SESSION_STORE                 memory (one process; a restart logs everyone out), or a postgres://
                                URL that several gateway replicas share; they refresh a session
                                one at a time, under a lease in the database            (default memory)
  SESSION_ENCRYPTION_KEY        32 random bytes, base64, sealing each stored session's tokens
                                (AES-256-GCM)                                  (required with postgres://)
`;

/** The login's environment: only the secret (a command line is visible to every user of the machine). */
export const LOGIN_ENV = {
  LOGIN_CLIENT_SECRET: z.string().optional(),
  SESSION_STORE: z.string().regex(/^(memory|postgres(ql)?:\/\/.+)$/, 'must be memory or a postgres:// URL').default('memory'),
  SESSION_ENCRYPTION_KEY: z.string().optional(),
};

type LoginEnv = { LOGIN_CLIENT_SECRET?: string; SESSION_STORE?: string; SESSION_ENCRYPTION_KEY?: string };

/** The session store SESSION_STORE names: memory (bounded by --session-max) or PostgreSQL, sealed with SESSION_ENCRYPTION_KEY. */
function sessionStore(env: LoginEnv, max: number, now: () => number, logger: Logger): SessionStore {
  const where = env.SESSION_STORE ?? 'memory';
  if (where === 'memory') return createMemorySessionStore({ now, maxEntries: max });
  if (env.SESSION_ENCRYPTION_KEY === undefined) throw new UsageError('SESSION_ENCRYPTION_KEY must be set with a postgres:// SESSION_STORE: stored sessions hold tokens');
  let key: Buffer;
  try {
    key = parseEncryptionKey(env.SESSION_ENCRYPTION_KEY);
  } catch (err) {
    throw new UsageError(`SESSION_ENCRYPTION_KEY ${(err as Error).message}`);
  }
  return createPostgresSessionStore({ url: where, key, now, logger, maxEntries: max });
}

type LoginValues = { [K in keyof typeof LOGIN_FLAGS]?: (typeof LOGIN_FLAGS)[K] extends { multiple: true } ? string[] : string };

function seconds(flag: string, value: string | undefined, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${flag} must be a whole number of seconds, at least ${min}, got "${value}"`);
  return n;
}

function path(flag: string, value: string): string {
  if (!/^\/[A-Za-z0-9._~!$&'()*+,;=:@/-]*$/.test(value)) throw new UsageError(`--${flag} must be a path starting with /, got "${value}"`);
  return value;
}

/** A header name is an RFC 9110 §5.6.2 token. */
function headerName(flag: string, value: string): string {
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value)) throw new UsageError(`--${flag} must be a header name, got "${value}"`);
  return value;
}

/**
 * Parses the login flags; undefined when --login-issuer is absent. `store` replaces the memory
 * store (replicas sharing one); `now` the clock (ms); `onEvent` hears logins, refreshes, logouts.
 */
export function parseLogin(
  values: LoginValues,
  env: LoginEnv,
  deps: { logger: Logger; now?: () => number; store?: SessionStore; onEvent?: (event: LoginEvent) => void },
): LoginHook | undefined {
  if (values['login-issuer'] === undefined) return undefined;
  const url = (flag: string, value: string | undefined): URL => {
    try {
      const u = new URL(value ?? '');
      if (u.protocol === 'http:' || u.protocol === 'https:') return u;
    } catch {
      /* below */
    }
    throw new UsageError(`--${flag} must be an absolute http(s) URL, got "${value}"`);
  };
  const issuer = url('login-issuer', values['login-issuer']);
  if (!values['login-client-id']) throw new UsageError('--login-client-id is required with --login-issuer');
  if (values['public-url'] === undefined) throw new UsageError('--public-url is required with --login-issuer');
  const publicUrl = url('public-url', values['public-url']);
  if (publicUrl.pathname !== '/' || publicUrl.search) throw new UsageError(`--public-url must be an origin without a path, got "${values['public-url']}"`);
  const secret = env.LOGIN_CLIENT_SECRET;
  if (!secret) throw new UsageError('LOGIN_CLIENT_SECRET must be set in the environment with --login-issuer');
  const claimHeaders: ClaimHeader[] = (values['login-claim-header'] ?? []).map((pair) => {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--login-claim-header expects claim=header, got "${pair}"`);
    return { claim: pair.slice(0, eq), header: headerName('login-claim-header', pair.slice(eq + 1)) };
  });
  const clientAuth = values['login-client-auth'] ?? LOGIN_FLAGS['login-client-auth'].default;
  if (clientAuth !== 'client_secret_basic' && clientAuth !== 'client_secret_post') throw new UsageError(`--login-client-auth must be client_secret_basic or client_secret_post, got "${clientAuth}"`);
  const max = Number(values['session-max'] ?? LOGIN_FLAGS['session-max'].default);
  if (!Number.isInteger(max) || max < 1) throw new UsageError(`--session-max must be a positive whole number, got "${values['session-max']}"`);
  const now = deps.now ?? Date.now;
  const timeoutSeconds = 10;
  const callbackPath = path('login-callback-path', values['login-callback-path'] ?? '/callback');
  return createLogin({
    options: {
      publicUrl,
      cookieName: values['session-cookie'] ?? defaultCookieName(publicUrl),
      sessionLifetimeMs: seconds('session-lifetime', values['session-lifetime'] ?? LOGIN_FLAGS['session-lifetime'].default, 60) * 1000,
      sessionIdleMs: seconds('session-idle', values['session-idle'] ?? LOGIN_FLAGS['session-idle'].default, 60) * 1000,
      callbackPath,
      logoutPath: path('login-logout-path', values['login-logout-path'] ?? '/logout'),
      apiPrefixes: (values['login-api-prefix'] ?? ['/api/']).map((p) => path('login-api-prefix', p)),
      idTokenHeader: values['login-id-token-header'] && headerName('login-id-token-header', values['login-id-token-header']),
      accessTokenHeader: values['login-access-token-header'] && headerName('login-access-token-header', values['login-access-token-header']),
      claimHeaders,
      // Half a minute ahead by default: a token forwarded now still has time to be checked upstream
      // (Envoy's jwt_authn allows 60 s of skew on top).
      refreshAheadMs: seconds('login-refresh-ahead', values['login-refresh-ahead'] ?? LOGIN_FLAGS['login-refresh-ahead'].default, 0) * 1000,
      // A lease outlasts the holder's call to the provider (aborted after timeoutSeconds), so it
      // never runs out while that refresh may still reach the provider.
      refreshLeaseMs: (timeoutSeconds + 5) * 1000,
      refreshWaitMs: 5000,
    },
    oidc: createOidcClient({
      issuer,
      clientId: values['login-client-id'],
      clientSecret: secret,
      redirectUri: `${publicUrl.origin}${callbackPath}`,
      scope: values['login-scope'] ?? LOGIN_FLAGS['login-scope'].default,
      clientAuth,
      timeoutSeconds,
    }),
    store: deps.store ?? sessionStore(env, max, now, deps.logger),
    now,
    logger: deps.logger,
    onEvent: deps.onEvent,
  });
}
