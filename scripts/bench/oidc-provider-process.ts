import { generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import type { Server } from 'node:http';
import { PEER_AUDIENCE, PEER_CLIENT } from './peer-client.js';

/**
 * The peer: panva/node-oidc-provider 9 doing the factory's job, client_credentials with client
 * authentication and an RS256 JWT access token (RFC 9068), configured as its documentation
 * says: `features.clientCredentials`, and `features.resourceIndicators` (RFC 8707) whose
 * resource server asks for `accessTokenFormat: 'jwt'` signed RS256 — without a resource,
 * oidc-provider issues opaque tokens. Listens on PORT (the issuer names it) and logs
 * `{"msg":"listening","port":N}`.
 */


/** The part of oidc-provider's API used here (the package ships no TypeScript types). */
type ProviderClass = new (issuer: string, configuration: Record<string, unknown>) => { listen(port: number, host: string, ready: () => void): Server };
// A module name held in a variable: TypeScript leaves the untyped package to run time.
const packageName = 'oidc-provider';
const { default: Provider } = (await import(packageName)) as { default: ProviderClass };

const port = Number(process.env.PORT);
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = await exportJWK(privateKey);
const signingKey = { ...jwk, alg: 'RS256', use: 'sig', kid: await calculateJwkThumbprint(jwk) };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    {
      client_id: PEER_CLIENT.id,
      client_secret: PEER_CLIENT.secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  scopes: ['read', 'write'],
  ttl: { ClientCredentials: 3600 },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => `https://${PEER_AUDIENCE}/`,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({ scope: 'read write', audience: PEER_AUDIENCE, accessTokenTTL: 3600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }),
    },
  },
});

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
