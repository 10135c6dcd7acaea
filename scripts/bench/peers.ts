import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from '../../lib/ports.js';
import { launch, ROOT, type Launched } from './launch.js';
import type { LoadTarget } from './load.js';
import { startFactory } from './factory.js';
import { PEER_AUDIENCE, PEER_CLIENT } from './peer-client.js';

/**
 * The factory's peers on the same job, each one entry: client authentication plus an RS256 JWT
 * access token. An entry says why it cannot run (its part of the suite is missing) or starts
 * its server and names the request the load repeats; the bench loads them in the same rounds
 * as the factory's /issueToken and the floors.
 */
export interface Peer {
  id: string;
  label: string;
  /** Why this peer cannot be measured in this tree, or undefined when it can. */
  unavailable(): string | undefined;
  start(tmpDir: string, context: { logLevel: string }): Promise<{ process: Launched; target: LoadTarget }>;
}

/** RFC 6749 §4.4 client_credentials with HTTP Basic client authentication (§2.3.1). */
const clientCredentials = (tokenUrl: string, client: { id: string; secret: string }, extra = ''): LoadTarget => ({
  url: tokenUrl,
  method: 'POST',
  headers: {
    'content-type': 'application/x-www-form-urlencoded',
    authorization: `Basic ${Buffer.from(`${encodeURIComponent(client.id)}:${encodeURIComponent(client.secret)}`).toString('base64')}`,
  },
  body: `grant_type=client_credentials&scope=read%20write${extra}`,
});

/** panva/node-oidc-provider 9, configured for RS256 JWT access tokens (scripts/bench/oidc-provider-process.ts). */
const oidcProvider: Peer = {
  id: 'oidc-provider-cc',
  label: 'oidc-provider 9 client_credentials (RS256 JWT)',
  unavailable: () => undefined,
  async start(tmpDir) {
    // Its issuer names its port, so the port is chosen before it starts.
    const port = await freePort();
    const server = await launch('scripts/bench/oidc-provider-process.ts', { env: { PORT: String(port) }, logFile: path.join(tmpDir, 'oidc-provider.log') });
    return { process: server, target: clientCredentials(`http://127.0.0.1:${port}/token`, PEER_CLIENT) };
  },
};

/** The bench client as the factory's OIDC_CONFIG lists it (RFC 7591 client metadata names). */
const PROVIDER_CLIENT = {
  client_id: PEER_CLIENT.id,
  client_secret: PEER_CLIENT.secret,
  grant_types: ['client_credentials'],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: 'read write',
  audiences: [PEER_AUDIENCE],
  access_token_lifetime: 3600,
};

/**
 * The factory's own client_credentials grant (POST /token of its OpenID Connect provider,
 * OIDC_CONFIG), in a factory process of its own with one client like oidc-provider's: the same
 * id and secret, HTTP Basic, scope "read write", the bench audience, an RS256 at+jwt back.
 */
const factoryClientCredentials: Peer = {
  id: 'factory-cc',
  label: 'jwt-factory client_credentials (RS256 JWT)',
  unavailable: () => (existsSync(path.join(ROOT, 'jwt-factory', 'oidc')) ? undefined : "this tree has no jwt-factory/oidc/ (the factory's OpenID Connect provider)"),
  async start(tmpDir, context) {
    const dir = path.join(tmpDir, 'factory-cc');
    await mkdir(dir, { recursive: true });
    const oidcConfig = path.join(dir, 'oidc.yaml');
    // JSON is YAML: the provider's config file needs no YAML writer here.
    await writeFile(oidcConfig, JSON.stringify({ clients: [PROVIDER_CLIENT], users: [] }));
    const server = await startFactory({ keysDir: path.join(dir, 'keys'), logLevel: context.logLevel, workers: undefined, logFile: path.join(tmpDir, 'factory-cc.log'), env: { OIDC_CONFIG: oidcConfig } });
    return { process: server, target: clientCredentials(`http://127.0.0.1:${server.port}/token`, PEER_CLIENT) };
  },
};

/** Every peer, in table order. */
export const PEERS: readonly Peer[] = [oidcProvider, factoryClientCredentials];
