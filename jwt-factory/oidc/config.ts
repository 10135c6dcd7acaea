import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { JWK } from 'jose';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../../lib/errors.js';
import { KEY_ID_PATTERN } from '../../lib/keyid.js';
import { hashProblem, storedSecret, type StoredSecret } from './secrets.js';

/**
 * OIDC_CONFIG: the provider's clients (RFC 7591 client metadata names) and users, read once
 * at start from a JSON or YAML file and validated; a bad file stops start-up with a sentence
 * naming the file and the field.
 */

export const GRANT_TYPES = [
  'authorization_code',
  'refresh_token',
  'client_credentials',
  'password',
  'urn:ietf:params:oauth:grant-type:token-exchange',
  'urn:ietf:params:oauth:grant-type:jwt-bearer',
] as const;
export type GrantType = (typeof GRANT_TYPES)[number];
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** RFC 7523 §2.1: a JWT from a trusted issuer (a Kubernetes service-account token) as the grant. */
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** OIDC Dynamic Client Registration §2 `application_type`: web by default. */
export const APPLICATION_TYPES = ['web', 'native'] as const;

/** `tls_client_auth` (RFC 8705 §2.1): the caller's mTLS identity, as the factory's sidecar reports it (TRUST_XFCC). */
export const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'tls_client_auth', 'none'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];

/** The scopes this provider knows (OIDC Core §5.4 plus offline_access of §11). */
export const SCOPES = ['openid', 'profile', 'email', 'address', 'phone', 'offline_access'] as const;

/** Algorithms a client may sign its private_key_jwt assertions with (asymmetric only: RFC 7523 with a registered public key). */
export const ASSERTION_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

/** Defaults of the lifetimes (seconds): short access and id tokens, refresh tokens for a working day. */
export const DEFAULT_LIFETIMES = { access_token_lifetime: 600, id_token_lifetime: 600, refresh_token_lifetime: 86_400 } as const;

const absoluteUrl = z.string().refine((v) => {
  try {
    const url = new URL(v);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hash === '' && !v.includes('#');
  } catch {
    return false;
  }
}, 'must be an absolute http(s) URL without a fragment');

const lifetime = (fallback: number) => z.number().int().min(1, 'must be at least 1 second').max(31_536_000, 'must be at most a year').default(fallback);
const identifier = z.string().regex(/^[\x21-\x7e]{1,128}$/, 'must be 1 to 128 visible ASCII characters');
const hash = z.string().superRefine((v, ctx) => {
  const problem = hashProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

const jwkSchema = z.record(z.string(), z.unknown()).refine((k) => typeof k.kty === 'string', 'must be a JWK with kty');
const publicOnly = (k: Record<string, unknown>) => !['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'].some((m) => m in k);

const clientSchema = z
  .object({
    client_id: identifier,
    client_name: z.string().min(1).max(200).optional(),
    // OIDC Dynamic Client Registration §2: native apps get RFC 8252 §7.3's loopback port latitude.
    application_type: z.enum(APPLICATION_TYPES, { message: `must be one of ${APPLICATION_TYPES.join(', ')}` }).default('web'),
    client_secret: z.string().min(1).optional(),
    client_secret_hash: hash.optional(),
    redirect_uris: z.array(absoluteUrl).default([]),
    post_logout_redirect_uris: z.array(absoluteUrl).default([]),
    grant_types: z.array(z.enum(GRANT_TYPES, { message: `must be one of ${GRANT_TYPES.join(', ')}` })).min(1).default(['authorization_code']),
    response_types: z.array(z.literal('code', { message: 'only code is supported' })).default(['code']),
    token_endpoint_auth_method: z.enum(AUTH_METHODS, { message: `must be one of ${AUTH_METHODS.join(', ')}` }).default('client_secret_basic'),
    token_endpoint_auth_signing_alg: z.enum(ASSERTION_ALGS).optional(),
    scope: z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/, 'must be space-separated scope tokens (RFC 6749 §3.3)').default(SCOPES.join(' ')),
    audiences: z.array(z.string().min(1)).default([]),
    // The factory keyIds this client may issue for with ISSUE_AUTH=client (unset: its client_id).
    key_ids: z.array(z.string().regex(KEY_ID_PATTERN, 'must match ^[A-Za-z0-9._-]{1,64}$')).min(1).optional(),
    jwks: z.object({ keys: z.array(jwkSchema.refine(publicOnly, 'must be a public key (no private members)')).min(1) }).optional(),
    jwks_uri: absoluteUrl.optional(),
    // RFC 8705 §2.1.2: the URI SAN the client's certificate must carry, its SPIFFE id in a mesh.
    tls_client_auth_san_uri: z
      .string()
      .max(2048)
      .refine((v) => URL.canParse(v) && !/[\s,;="]/.test(v), 'must be an absolute URI such as spiffe://cluster.local/ns/<namespace>/sa/<service account>')
      .optional(),
    access_token_lifetime: lifetime(DEFAULT_LIFETIMES.access_token_lifetime),
    id_token_lifetime: lifetime(DEFAULT_LIFETIMES.id_token_lifetime),
    refresh_token_lifetime: lifetime(DEFAULT_LIFETIMES.refresh_token_lifetime),
  })
  .strict()
  .superRefine((c, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
    const secretMethod = c.token_endpoint_auth_method === 'client_secret_basic' || c.token_endpoint_auth_method === 'client_secret_post';
    if (c.client_secret !== undefined && c.client_secret_hash !== undefined) issue('client_secret_hash', 'give client_secret or client_secret_hash, not both');
    if (secretMethod && c.client_secret === undefined && c.client_secret_hash === undefined) issue('client_secret', `is required for ${c.token_endpoint_auth_method}`);
    if (!secretMethod && (c.client_secret !== undefined || c.client_secret_hash !== undefined)) issue('client_secret', `is not used with ${c.token_endpoint_auth_method}`);
    if (c.token_endpoint_auth_method === 'private_key_jwt' && !c.jwks === !c.jwks_uri) issue('jwks', 'private_key_jwt needs exactly one of jwks or jwks_uri');
    if (c.token_endpoint_auth_method === 'tls_client_auth' && c.tls_client_auth_san_uri === undefined) issue('tls_client_auth_san_uri', 'is required for tls_client_auth (RFC 8705 §2.1.2)');
    if (c.token_endpoint_auth_method !== 'tls_client_auth' && c.tls_client_auth_san_uri !== undefined) issue('tls_client_auth_san_uri', `is not used with ${c.token_endpoint_auth_method}`);
    if (c.grant_types.includes('authorization_code') && c.redirect_uris.length === 0) issue('redirect_uris', 'must list at least one URI for authorization_code');
    if (c.application_type === 'native') {
      // RFC 8252 §7.2–§7.3 (OIDC Registration §2): a native app receives its code on a loopback
      // interface over http or on a claimed https URL, never on another host over plain http.
      c.redirect_uris.forEach((uri, i) => {
        const url = new URL(uri);
        if (url.protocol === 'http:' && !['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname)) {
          ctx.addIssue({ code: 'custom', path: ['redirect_uris', i], message: 'a native client takes http only on a loopback host (127.0.0.1, [::1], localhost), else https' });
        }
      });
    }
    if (c.token_endpoint_auth_method === 'none') {
      for (const grant of ['client_credentials', 'password', TOKEN_EXCHANGE] as const) {
        if (c.grant_types.includes(grant)) issue('grant_types', `${grant} needs an authenticated client, not token_endpoint_auth_method none`);
      }
    }
    if (c.grant_types.includes('refresh_token') && !c.grant_types.some((g) => g === 'authorization_code' || g === 'password')) {
      issue('grant_types', 'refresh_token needs authorization_code or password to obtain the first refresh token');
    }
  });

/** An issuer whose JWTs stand for a client (RFC 7523 §3): a Kubernetes cluster's service-account tokens. */
const trustedIssuerSchema = z
  .object({
    issuer: z.string().min(1),
    jwks_file: z.string().min(1).optional(),
    jwks: z.object({ keys: z.array(jwkSchema.refine(publicOnly, 'must be a public key (no private members)')).min(1) }).optional(),
    jwks_uri: absoluteUrl.optional(),
    // A Kubernetes API server's /openid/v1/jwks: its CA, and a token whose RBAC allows the read
    // (system:service-account-issuer-discovery), re-read on every fetch as the kubelet rotates it.
    jwks_ca_file: z.string().min(1).optional(),
    jwks_token_file: z.string().min(1).optional(),
    // Pins the alg of keys that do not declare one (Kubernetes' JWKS declares RS256 or ES256).
    signing_alg: z.enum(ASSERTION_ALGS).optional(),
    audience: z.string().min(1),
    subjects: z.record(z.string().min(1), identifier).refine((m) => Object.keys(m).length > 0, 'must map at least one subject'),
  })
  .strict()
  .refine((t) => [t.jwks_file, t.jwks, t.jwks_uri].filter((v) => v !== undefined).length === 1, { message: 'needs exactly one of jwks_file, jwks or jwks_uri', path: ['jwks'] })
  .refine((t) => t.jwks_uri !== undefined || (t.jwks_ca_file === undefined && t.jwks_token_file === undefined), { message: 'jwks_ca_file and jwks_token_file go with jwks_uri only', path: ['jwks_uri'] });

const userSchema = z
  .object({
    username: z.string().min(1).max(128),
    sub: z.string().min(1).max(255).optional(),
    password: z.string().min(1).optional(),
    password_hash: hash.optional(),
    claims: z.record(z.string(), z.unknown()).default({}),
  })
  .strict()
  .superRefine((u, ctx) => {
    if ((u.password === undefined) === (u.password_hash === undefined)) ctx.addIssue({ code: 'custom', path: ['password'], message: 'give password or password_hash (exactly one)' });
    for (const reserved of ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'auth_time', 'nonce', 'azp', 'at_hash', 'sid', 'acr', 'amr']) {
      if (reserved in u.claims) ctx.addIssue({ code: 'custom', path: ['claims', reserved], message: 'is set by the provider' });
    }
  });

const fileSchema = z
  .object({
    clients: z.array(clientSchema).min(1, 'must list at least one client'),
    users: z.array(userSchema).default([]),
    trusted_issuers: z.array(trustedIssuerSchema).default([]),
  })
  .strict()
  .superRefine((f, ctx) => {
    const byId = new Map(f.clients.map((c) => [c.client_id, c]));
    const issuers = new Set<string>();
    f.trusted_issuers.forEach((t, i) => {
      if (issuers.has(t.issuer)) ctx.addIssue({ code: 'custom', path: ['trusted_issuers', i, 'issuer'], message: `"${t.issuer}" is listed twice` });
      issuers.add(t.issuer);
      for (const [subject, clientId] of Object.entries(t.subjects)) {
        if (!byId.get(clientId)?.grant_types.includes(JWT_BEARER_GRANT)) {
          ctx.addIssue({ code: 'custom', path: ['trusted_issuers', i, 'subjects', subject], message: `"${clientId}" must be a client whose grant_types list ${JWT_BEARER_GRANT}` });
        }
      }
    });
    const seen = new Set<string>();
    f.clients.forEach((c, i) => {
      if (seen.has(c.client_id)) ctx.addIssue({ code: 'custom', path: ['clients', i, 'client_id'], message: `"${c.client_id}" is listed twice` });
      seen.add(c.client_id);
    });
    const names = new Set<string>();
    const subs = new Set<string>();
    f.users.forEach((u, i) => {
      if (names.has(u.username)) ctx.addIssue({ code: 'custom', path: ['users', i, 'username'], message: `"${u.username}" is listed twice` });
      const sub = u.sub ?? u.username;
      if (subs.has(sub)) ctx.addIssue({ code: 'custom', path: ['users', i, 'sub'], message: `"${sub}" is used twice` });
      // client_credentials tokens carry sub = client_id, and the mesh principal is <iss>/<sub>
      // whatever signed it: a user of that name would pass every rule written for the client.
      if (byId.has(sub)) ctx.addIssue({ code: 'custom', path: ['users', i, u.sub === undefined ? 'username' : 'sub'], message: `"${sub}" is a client_id: the user's tokens would carry that client's principal (<iss>/${sub})` });
      names.add(u.username);
      subs.add(sub);
    });
  });

type ClientInput = z.infer<typeof clientSchema>;

/** A registered client as the grants use it: metadata plus its parsed secret. */
export interface Client extends Omit<ClientInput, 'client_secret' | 'client_secret_hash' | 'jwks'> {
  readonly secret: StoredSecret | undefined;
  readonly jwks: { keys: JWK[] } | undefined;
  /** The scopes it may ask for. */
  readonly scopes: ReadonlySet<string>;
  readonly displayName: string;
}

/** The audiences a client may ask tokens for: its `audiences`, else itself. */
export const allowedAudiences = (client: Client): readonly string[] => (client.audiences.length > 0 ? client.audiences : [client.client_id]);

/** The keyIds a client may issue for: its `key_ids`, by default its own client_id. */
export const ownedKeyIds = (client: Client): readonly string[] => client.key_ids ?? [client.client_id];

/** A user who can log in. */
export interface User {
  readonly username: string;
  readonly sub: string;
  readonly secret: StoredSecret;
  readonly claims: Readonly<Record<string, unknown>>;
}

/** A trusted issuer of assertions, by its `iss`. */
export interface TrustedIssuer {
  readonly issuer: string;
  readonly jwksFile: string | undefined;
  readonly jwks: readonly JWK[] | undefined;
  readonly jwksUri: string | undefined;
  /** PEM file of the CA(s) the jwks_uri's server certificate must chain to (in place of the public roots). */
  readonly jwksCaFile: string | undefined;
  /** A file holding the bearer token sent with the jwks_uri GET, re-read on every fetch. */
  readonly jwksTokenFile: string | undefined;
  readonly signingAlg: string | undefined;
  readonly audience: string;
  /** Assertion `sub` -> the client_id it stands for. */
  readonly subjects: ReadonlyMap<string, string>;
}

export interface OidcConfig {
  readonly clients: ReadonlyMap<string, Client>;
  readonly users: ReadonlyMap<string, User>;
  readonly trustedIssuers: ReadonlyMap<string, TrustedIssuer>;
}

/** `clients[1].redirect_uris[0]`: a zod path as the file's reader would write it. */
function fieldPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, part) => (typeof part === 'number' ? `${out}[${part}]` : out === '' ? String(part) : `${out}.${String(part)}`), '');
}

/** Parses the text of an OIDC_CONFIG file (JSON or YAML); `name` is used in error sentences. */
export function parseOidcConfig(text: string, name: string): OidcConfig {
  let data: unknown;
  try {
    // YAML 1.2 is a superset of JSON; the alias cap stops "billion laughs" expansion of a hostile file.
    data = /\.json$/i.test(name) ? JSON.parse(text) : parseYaml(text, { maxAliasCount: 50, uniqueKeys: true });
  } catch (err) {
    throw new ConfigError('OIDC_CONFIG', `${name}: not valid ${/\.json$/i.test(name) ? 'JSON' : 'YAML'} (${(err as Error).message.split('\n')[0]})`);
  }
  const result = fileSchema.safeParse(data);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where = fieldPath(issue.path);
    throw new ConfigError('OIDC_CONFIG', `${name}: ${where === '' ? '' : `${where}: `}${issue.message}`);
  }
  const clients = new Map<string, Client>();
  for (const c of result.data.clients) {
    const { client_secret, client_secret_hash, jwks, ...meta } = c;
    const secret = client_secret_hash !== undefined ? storedSecret(client_secret_hash, true) : client_secret !== undefined ? storedSecret(client_secret, false) : undefined;
    clients.set(c.client_id, Object.freeze({ ...meta, secret, jwks: jwks as { keys: JWK[] } | undefined, scopes: new Set(c.scope.split(' ')), displayName: c.client_name ?? c.client_id }));
  }
  const users = new Map<string, User>();
  for (const u of result.data.users) {
    const secret = u.password_hash !== undefined ? storedSecret(u.password_hash, true) : storedSecret(u.password!, false);
    users.set(u.username, Object.freeze({ username: u.username, sub: u.sub ?? u.username, secret, claims: Object.freeze({ ...u.claims }) }));
  }
  const trustedIssuers = new Map<string, TrustedIssuer>();
  for (const t of result.data.trusted_issuers) {
    trustedIssuers.set(
      t.issuer,
      Object.freeze({
        issuer: t.issuer,
        // Relative to the config file, so a checked-in config can name a JWKS next to it.
        jwksFile: t.jwks_file === undefined ? undefined : path.resolve(path.dirname(name), t.jwks_file),
        jwks: t.jwks?.keys as JWK[] | undefined,
        jwksUri: t.jwks_uri,
        jwksCaFile: t.jwks_ca_file === undefined ? undefined : path.resolve(path.dirname(name), t.jwks_ca_file),
        jwksTokenFile: t.jwks_token_file === undefined ? undefined : path.resolve(path.dirname(name), t.jwks_token_file),
        signingAlg: t.signing_alg,
        audience: t.audience,
        subjects: new Map(Object.entries(t.subjects)),
      }),
    );
  }
  return Object.freeze({ clients, users, trustedIssuers });
}

/** Reads and parses OIDC_CONFIG at start-up (before the server listens). */
export function loadOidcConfig(file: string): OidcConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('OIDC_CONFIG', `${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return parseOidcConfig(text, file);
}
