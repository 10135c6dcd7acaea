import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import * as client from 'openid-client';
import { writeFileAtomic } from '../lib/files.js';
import { listen } from '../lib/server.js';
import { decodeToken } from '../lib/tokeninfo.js';
import { CommandFailed, UsageError, integerFlag, parseCommand, type CommandSpec, type Command, type Io, type Values } from './command.js';
import { FACTORY_OPTION, factoryBase, printJson } from './io.js';
import { discoveryUrl } from './inspect.js';

/**
 * `jwt login` and `jwt exchange`: an OAuth client on the command line. openid-client builds and
 * checks every message (discovery, PKCE, state, the token response, the id token's claims).
 */

const PROVIDER_OPTIONS = {
  ...FACTORY_OPTION,
  issuer: { type: 'string', value: '<url>', help: 'the OpenID provider: its issuer URL or discovery URL (default: the factory, as --factory finds it)' },
  'client-id': { type: 'string', value: '<id>', help: 'the client registered at the provider (required)' },
  'client-secret-file': { type: 'string', value: '<file>', help: 'a confidential client\'s secret, read from a file (never a flag: it would show in ps and shell history)' },
  out: { type: 'string', value: '<file>', help: 'store the token response in this file (mode 0600)' },
  'print-token': { type: 'boolean', help: 'print the tokens on stdout (they are never printed otherwise)' },
} as const satisfies CommandSpec['options'];

/** Plain http only to a provider on this machine (RFC 8252 §8.3 allows loopback); TLS is always verified. */
function isLoopback(url: URL): boolean {
  return ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
}

/** Discovers the provider and returns openid-client's configuration for our client. */
async function configure(values: Values, io: Io): Promise<client.Configuration> {
  const clientId = values['client-id'] as string | undefined;
  if (!clientId) throw new UsageError('--client-id is required');
  const secretFile = values['client-secret-file'] as string | undefined;
  const secret = secretFile === undefined ? undefined : (await readFile(secretFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`--client-secret-file ${secretFile}: ${err.code ?? err.message}`);
  })).trim();
  const where = new URL(discoveryUrl((values.issuer as string | undefined) ?? factoryBase(values, io)));
  const execute = where.protocol === 'http:' && isLoopback(where) ? [client.allowInsecureRequests] : [];
  try {
    return await client.discovery(where, clientId, secret, secret === undefined ? client.None() : client.ClientSecretBasic(secret), { execute, timeout: 10 });
  } catch (err) {
    throw new CommandFailed(`discovery at ${where.href} failed: ${await oauthMessage(err)}`, { error: { code: 'discovery_failed' } });
  }
}

interface OAuthErrorFields {
  error?: string;
  error_description?: string;
}

/**
 * An OAuth error as `error: description` (RFC 6749 §5.2 names), or the library's message. A 401
 * with a `WWW-Authenticate` challenge (RFC 6749 §5.2: invalid_client) reaches us as openid-client's
 * challenge error, the JSON body unread: the error is in the challenge's parameters or in that body.
 */
async function oauthMessage(err: unknown): Promise<string> {
  const e = err as OAuthErrorFields & { message?: string; cause?: unknown; response?: Response };
  const challenge = Array.isArray(e.cause) ? (e.cause as Array<{ parameters?: OAuthErrorFields }>).find((c) => c.parameters?.error)?.parameters : undefined;
  let fields: OAuthErrorFields | undefined = e.error ? e : challenge ?? (e.cause as OAuthErrorFields | undefined);
  if (!fields?.error && e.response instanceof Response) {
    fields = (await e.response.clone().json().catch(() => undefined)) as OAuthErrorFields | undefined;
  }
  if (typeof fields?.error === 'string') return `${fields.error}${fields.error_description ? `: ${fields.error_description}` : ''}`;
  return e.message ?? String(err);
}

type Tokens = client.TokenEndpointResponse;

/** What the command says about tokens without showing them: subject, scope, expiry. */
function summary(tokens: Tokens, io: Io) {
  const id = typeof tokens.id_token === 'string' ? decodeToken(tokens.id_token, io.now()).payload : undefined;
  return { sub: id?.sub, scope: tokens.scope, token_type: tokens.token_type, expires_in: tokens.expires_in, tokens: ['access_token', 'id_token', 'refresh_token', 'issued_token_type'].filter((k) => k in tokens && k !== 'issued_token_type') };
}

/** Stores or prints the tokens as asked; prints a summary otherwise. */
async function deliver(tokens: Tokens, values: Values, io: Io, what: string): Promise<number> {
  const body = { ...tokens };
  if (values.out !== undefined) await writeFileAtomic(values.out as string, `${JSON.stringify(body, null, 2)}\n`, { mode: 0o600 });
  if (values['print-token']) printJson(io, body);
  else if (values.json) printJson(io, { ...summary(tokens, io), ...(values.out !== undefined ? { out: values.out } : {}) });
  else {
    const s = summary(tokens, io);
    io.out(`${what}${s.sub ? ` as ${s.sub}` : ''}: ${s.tokens.join(', ')}${s.expires_in ? `, expires in ${s.expires_in} s` : ''}${s.scope ? `, scope "${s.scope}"` : ''}\n`);
    io.out(values.out !== undefined ? `stored in ${values.out} (mode 0600)\n` : 'tokens not printed: use --out <file> or --print-token\n');
  }
  return 0;
}

const loginSpec = {
  name: 'login',
  brief: 'log in at an OpenID provider (authorization code + PKCE with a loopback redirect, or the device flow)',
  summary: `Logs in at an OpenID provider as gcloud and az do: the authorization-code flow with PKCE and a
redirect to http://127.0.0.1:<port>/callback (RFC 8252 §7.3), the URL to open printed on stderr; or,
with --device, the device flow (RFC 8628) when the provider offers it. The tokens are stored with
--out (mode 0600) or printed with --print-token; otherwise only who logged in is printed.`,
  options: {
    ...PROVIDER_OPTIONS,
    scope: { type: 'string', value: '<scopes>', help: 'scopes to ask for', default: 'openid profile' },
    port: { type: 'string', value: '<n>', help: 'loopback port of the redirect URI (0: any free port, if the provider allows any)', default: '0' },
    device: { type: 'boolean', help: 'use the device flow instead of a browser redirect' },
    timeout: { type: 'string', value: '<seconds>', help: 'how long to wait for the login', default: '300' },
  },
} satisfies CommandSpec;

/** Waits for the provider's redirect to the loopback callback; resolves with its URL. */
async function loopbackCallback(port: number, timeoutMs: number, onReady: (redirectUri: string) => void): Promise<URL> {
  const server = createServer();
  const actual = await listen(server, port, '127.0.0.1');
  const redirectUri = `http://127.0.0.1:${actual}/callback`;
  try {
    return await new Promise<URL>((resolve, reject) => {
      const timer = setTimeout(() => reject(new CommandFailed(`no login within ${timeoutMs / 1000} s`, { error: { code: 'login_timeout' } })), timeoutMs);
      server.on('request', (req, res) => {
        const url = new URL(req.url ?? '/', redirectUri);
        if (url.pathname !== '/callback') {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
          return;
        }
        const failed = url.searchParams.has('error');
        res.writeHead(failed ? 400 : 200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }).end(failed ? 'The login failed: see the terminal.\n' : 'Logged in: you can close this window and return to the terminal.\n');
        clearTimeout(timer);
        resolve(url);
      });
      onReady(redirectUri);
    });
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

/** `jwt login`. */
export const login: Command = {
  spec: loginSpec,
  async run(argv, io) {
    const { values } = parseCommand(loginSpec, argv);
    const timeoutMs = integerFlag('timeout', values.timeout as string, 1)! * 1000;
    const port = integerFlag('port', values.port as string)!;
    if (port > 65535) throw new UsageError('--port must be at most 65535');
    const config = await configure(values, io);
    const scope = values.scope as string;
    let tokens: Tokens;
    try {
      if (values.device) {
        if (!config.serverMetadata().device_authorization_endpoint) throw new CommandFailed('the provider offers no device flow (no device_authorization_endpoint): log in without --device', { error: { code: 'device_flow_unsupported' } });
        const started = await client.initiateDeviceAuthorization(config, { scope });
        io.err(`To log in, open ${started.verification_uri_complete ?? started.verification_uri} and enter the code ${started.user_code}\n`);
        const signal = AbortSignal.timeout(timeoutMs);
        tokens = await client.pollDeviceAuthorizationGrant(config, started, undefined, { signal }).catch((err: unknown) => {
          if (signal.aborted) throw new CommandFailed(`no login within ${timeoutMs / 1000} s: nobody approved the code ${started.user_code}`, { error: { code: 'login_timeout' } });
          throw err;
        });
      } else {
        const verifier = client.randomPKCECodeVerifier();
        const state = client.randomState();
        const nonce = client.randomNonce();
        const challenge = await client.calculatePKCECodeChallenge(verifier);
        let redirectUri = '';
        const callback = await loopbackCallback(port, timeoutMs, (uri) => {
          redirectUri = uri;
          const url = client.buildAuthorizationUrl(config, { redirect_uri: uri, scope, state, nonce, code_challenge: challenge, code_challenge_method: 'S256' });
          io.err(`Open this URL in a browser to log in (waiting ${timeoutMs / 1000} s for the redirect to ${uri}):\n${url.href}\n`);
        });
        tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: scope.split(' ').includes('openid') }, { redirect_uri: redirectUri });
      }
    } catch (err) {
      if (err instanceof CommandFailed) throw err;
      const reason = await oauthMessage(err);
      throw new CommandFailed(`the login failed: ${reason}`, { error: { code: 'login_failed', reason } });
    }
    return deliver(tokens, values, io, 'logged in');
  },
};

const TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:';

const exchangeSpec = {
  name: 'exchange',
  brief: 'trade a token for another at the provider (RFC 8693 token exchange)',
  summary: `Token exchange (RFC 8693): sends the subject token (and an actor token, for delegation) to the
provider's token endpoint and prints the token it issues (or stores it with --out, mode 0600).`,
  options: {
    ...PROVIDER_OPTIONS,
    'subject-token-file': { type: 'string', value: '<file>', help: 'the token to exchange (required)' },
    'subject-token-type': { type: 'string', value: '<type>', help: `its type, short (access_token, id_token, jwt, refresh_token) or a full ${TOKEN_TYPE}… URI`, default: 'access_token' },
    'actor-token-file': { type: 'string', value: '<file>', help: 'the acting party\'s token (delegation)' },
    'actor-token-type': { type: 'string', value: '<type>', help: 'its type', default: 'access_token' },
    audience: { type: 'string', value: '<aud>', help: 'the audience of the new token', multiple: true },
    resource: { type: 'string', value: '<uri>', help: 'the resource the new token is for', multiple: true },
    scope: { type: 'string', value: '<scopes>', help: 'scopes of the new token' },
    'requested-token-type': { type: 'string', value: '<type>', help: 'the type asked for' },
  },
} satisfies CommandSpec;

const typeUri = (t: string) => (t.includes(':') ? t : `${TOKEN_TYPE}${t}`);

async function readTokenFile(flag: string, file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`--${flag} ${file}: ${err.code ?? err.message}`);
  });
  if (text.trim() === '') throw new UsageError(`--${flag} ${file} is empty`);
  return text.trim();
}

/** `jwt exchange`. */
export const exchange: Command = {
  spec: exchangeSpec,
  async run(argv, io) {
    const { values } = parseCommand(exchangeSpec, argv);
    const subjectFile = values['subject-token-file'] as string | undefined;
    if (!subjectFile) throw new UsageError('--subject-token-file is required');
    const params = new URLSearchParams({ subject_token: await readTokenFile('subject-token-file', subjectFile), subject_token_type: typeUri(values['subject-token-type'] as string) });
    const actorFile = values['actor-token-file'] as string | undefined;
    if (actorFile) {
      params.set('actor_token', await readTokenFile('actor-token-file', actorFile));
      params.set('actor_token_type', typeUri(values['actor-token-type'] as string));
    }
    for (const a of (values.audience as string[] | undefined) ?? []) params.append('audience', a);
    for (const r of (values.resource as string[] | undefined) ?? []) params.append('resource', r);
    if (values.scope !== undefined) params.set('scope', values.scope as string);
    if (values['requested-token-type'] !== undefined) params.set('requested_token_type', typeUri(values['requested-token-type'] as string));
    const config = await configure(values, io);
    let tokens: Tokens;
    try {
      tokens = await client.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:token-exchange', params);
    } catch (err) {
      const reason = await oauthMessage(err);
      throw new CommandFailed(`the provider refused the exchange: ${reason}`, { error: { code: 'exchange_refused', reason } });
    }
    // The issued token is this command's output, as mint's is.
    if (values.out !== undefined || values['print-token'] || values.json) return deliver(tokens, { ...values, 'print-token': values['print-token'] || (values.json && values.out === undefined) }, io, 'exchanged');
    io.out(`${tokens.access_token}\n`);
    return 0;
  },
};
