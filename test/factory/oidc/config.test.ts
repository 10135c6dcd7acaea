import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadFactoryConfig } from '../../../jwt-factory/config.js';
import { loadOidcConfig, parseOidcConfig } from '../../../jwt-factory/oidc/config.js';
import { hashSecret, secretMatches, storedSecret } from '../../../jwt-factory/oidc/secrets.js';
import { ROOT } from '../../helpers/process.js';

/** The YAML of the specification, character for character (client_secret "..." included). */
const ISSUE_SHAPE = `clients:
  - client_id: webui
    client_secret: webui-secret            # or client_secret_hash (scrypt/argon2); never logged
    redirect_uris: [http://localhost:3000/callback]          # exact string match, no wildcards
    post_logout_redirect_uris: [http://localhost:3000/]
    grant_types: [authorization_code, refresh_token]
    response_types: [code]
    token_endpoint_auth_method: client_secret_basic          # client_secret_post | private_key_jwt | none
    scope: openid profile email offline_access               # what the client may ask for
    audiences: [serviceb]                                    # allowed resource/audience values; first = default
  - client_id: servicea
    client_secret: ...
    grant_types: [client_credentials, urn:ietf:params:oauth:grant-type:token-exchange]
    audiences: [serviceb, servicec]
  - client_id: spa                                           # public client: PKCE required
    redirect_uris: [http://localhost:3000/spa]
    grant_types: [authorization_code]
    token_endpoint_auth_method: none
users:
  - username: alice
    password: alice-password                                 # or password_hash
    claims: { name: Alice Liddell, email: alice@example.com, email_verified: true, groups: [admins] }
`;

const sentence = (yaml: string, name = 'oidc.yaml') => {
  try {
    parseOidcConfig(yaml, name);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected the config to be refused');
};

describe('OIDC_CONFIG', () => {
  it('loads the exact shape of the specification', () => {
    const config = parseOidcConfig(ISSUE_SHAPE, 'issue.yaml');
    expect([...config.clients.keys()]).toEqual(['webui', 'servicea', 'spa']);
    expect(config.clients.get('spa')!.token_endpoint_auth_method).toBe('none');
    expect(config.clients.get('servicea')!.audiences).toEqual(['serviceb', 'servicec']);
    expect(config.users.get('alice')!.claims.groups).toEqual(['admins']);
  });

  it('loads the committed demo file, JSON too', () => {
    const demo = loadOidcConfig(path.join(ROOT, 'jwt-factory/oidc.demo.yaml'));
    expect([...demo.clients.keys()]).toEqual(['webui', 'servicea', 'spa', 'cli', 'mesh-gateway']);
    const json = JSON.stringify({ clients: [{ client_id: 'a', client_secret: 's', grant_types: ['client_credentials'] }] });
    expect(parseOidcConfig(json, 'x.json').clients.get('a')!.grant_types).toEqual(['client_credentials']);
  });

  it('names the file and the field of a bad value', () => {
    const bad = ISSUE_SHAPE.replace('[http://localhost:3000/spa]', '[localhost:3000/spa]');
    expect(sentence(bad, 'jwt-factory/oidc.demo.yaml')).toBe('Invalid setting OIDC_CONFIG: jwt-factory/oidc.demo.yaml: clients[2].redirect_uris[0]: must be an absolute http(s) URL without a fragment');
    expect(sentence(ISSUE_SHAPE.replace('token_endpoint_auth_method: none', 'token_endpoint_auth_method: magic'))).toMatch(/clients\[2\]\.token_endpoint_auth_method: must be one of/);
    expect(sentence(ISSUE_SHAPE.replace('client_id: spa ', 'client_id: webui '))).toMatch(/clients\[2\]\.client_id: "webui" is listed twice/);
    expect(sentence(ISSUE_SHAPE.replace('    password: alice-password', '    passwd: x'))).toMatch(/^Invalid setting OIDC_CONFIG: oidc\.yaml: users\[0\]/);
    expect(sentence('clients: [')).toMatch(/oidc\.yaml: not valid YAML/);
  });

  it('refuses a confidential client without a secret and a public client with a machine grant', () => {
    expect(sentence('clients:\n  - client_id: a\n    grant_types: [client_credentials]\n')).toMatch(/clients\[0\]\.client_secret: is required for client_secret_basic/);
    expect(sentence('clients:\n  - client_id: a\n    token_endpoint_auth_method: none\n    grant_types: [client_credentials]\n')).toMatch(/needs an authenticated client/);
  });

  it('refuses a YAML alias bomb instead of expanding it', () => {
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 12; i += 1) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(', ')}]`);
    expect(sentence(`${lines.join('\n')}\nclients: []\n`)).toMatch(/not valid YAML/);
  });

  it('refuses OIDC_CONFIG with WORKERS > 1, naming the variable', () => {
    expect(() => loadFactoryConfig({ OIDC_CONFIG: 'x.yaml', WORKERS: '2' })).toThrow('Invalid setting OIDC_CONFIG: needs WORKERS=1');
  });
});

describe('scrypt secrets', () => {
  it('verifies a hash made by hash-password, and refuses another password', async () => {
    const hash = await hashSecret('alice-password', { N: 1024, r: 8, p: 1 });
    expect(hash).toMatch(/^scrypt\$1024\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    const stored = storedSecret(hash, true);
    expect(await secretMatches(stored, 'alice-password')).toBe(true);
    expect(await secretMatches(stored, 'alice-passwore')).toBe(false);
  });

  it('accepts a password_hash in the file and refuses a malformed one', async () => {
    const hash = await hashSecret('pw', { N: 1024, r: 8, p: 1 });
    const config = parseOidcConfig(`clients:\n  - client_id: a\n    client_secret: s\n    grant_types: [password]\nusers:\n  - username: u\n    password_hash: "${hash}"\n`, 'h.yaml');
    expect(await secretMatches(config.users.get('u')!.secret, 'pw')).toBe(true);
    expect(sentence(`clients:\n  - client_id: a\n    client_secret_hash: "scrypt$3$8$1$abc$def"\n`)).toMatch(/clients\[0\]\.client_secret_hash: must look like scrypt/);
  });

  it('never keeps a plain secret as given', () => {
    const stored = storedSecret('webui-secret', false);
    expect(JSON.stringify(stored)).not.toContain('webui-secret');
  });
});
