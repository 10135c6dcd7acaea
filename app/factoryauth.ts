import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { decodeJwt } from 'jose';
import { z } from 'zod';
import { AppError } from '../lib/errors.js';
import { dependencyError, parseAnswer, type HttpClient } from '../lib/httpclient.js';
import { epochSeconds } from '../lib/jwt.js';
import type { Logger } from '../lib/logger.js';
import { refreshInstant } from './tokencache.js';

/**
 * servicea's credential at the factory, for a factory with ISSUE_AUTH=client:
 *   - locally its client secret (FACTORY_CLIENT_ID / FACTORY_CLIENT_SECRET), sent as HTTP Basic;
 *   - in the cluster the projected service-account token the kubelet writes to
 *     FACTORY_ASSERTION_FILE. Its `jti` is single use at the factory, so it is exchanged once
 *     (RFC 7523 jwt-bearer at POST /token, `audience` = the factory's ISSUER) for an RFC 9068
 *     access token, which is kept until shortly before its `exp` and presented as a bearer
 *     (RFC 6750). The file is re-read on every exchange: the kubelet replaces it before expiry.
 * No setting: anonymous calls, as ISSUE_AUTH=open accepts.
 */

export type FactoryCredential = { kind: 'secret'; id: string; secret: string } | { kind: 'assertion'; file: string };

export interface FactoryAuth {
  /** The Authorization header for the next factory call; undefined without a credential. */
  authorization(): Promise<string | undefined>;
  /** Forgets a bearer the factory refused (a 401), so the next call exchanges afresh. */
  refused(authorization: string): void;
}

export interface FactoryAuthDeps {
  credential: FactoryCredential | undefined;
  client: HttpClient;
  factoryUrl: string;
  /** The factory's ISSUER: the audience of the access token asked for. */
  issuer: string;
  /** Seconds of skew the factory accepts on the assertion's `exp` (its CLOCK_TOLERANCE). */
  clockTolerance: number;
  now: () => Date;
  logger: Logger;
}

export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined and base64-encoded. */
export const basicAuth = ({ id, secret }: { id: string; secret: string }) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

const tokenAnswer = z.object({ access_token: z.string().min(1), token_type: z.string().regex(/^bearer$/i) }).passthrough();
const oauthRefusal = z.object({ error: z.string(), error_description: z.string().optional() }).passthrough();

/** 503: servicea cannot prove who it is right now; the message says why and which file, never its content. */
const credentialError = (code: string, message: string) => new AppError(code, 503, message, { expose: true, details: { dependency: 'jwt-factory' } });

interface Exchanged {
  authorization: string;
  /** Epoch seconds from which the token is no longer handed out (refreshInstant). */
  refreshAt: number;
  exp: number;
  /** sha256 of the assertion it was bought with: the file still holding it means the kubelet has not rotated it yet. */
  assertionDigest: string;
}

/** Creates servicea's factory credential; with an assertion file, one exchange in flight at a time. */
export function createFactoryAuth(deps: FactoryAuthDeps): FactoryAuth {
  const credential = deps.credential;
  if (credential === undefined) return { authorization: async () => undefined, refused: () => undefined };
  if (credential.kind === 'secret') {
    const header = basicAuth(credential);
    return { authorization: async () => header, refused: () => undefined };
  }
  const file = credential.file;
  let current: Exchanged | undefined;
  let inFlight: Promise<Exchanged> | undefined;

  async function readAssertion(): Promise<{ assertion: string; exp: number | undefined; jti: string | undefined }> {
    let assertion: string;
    try {
      assertion = (await readFile(file, 'utf8')).trim();
    } catch (err) {
      throw credentialError('factory_credential_unreadable', `FACTORY_ASSERTION_FILE ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}): is the projected service-account token mounted?`);
    }
    try {
      const claims = decodeJwt(assertion);
      return { assertion, exp: typeof claims.exp === 'number' ? claims.exp : undefined, jti: typeof claims.jti === 'string' ? claims.jti : undefined };
    } catch {
      throw credentialError('factory_credential_invalid', `FACTORY_ASSERTION_FILE ${file} does not hold a JWT`);
    }
  }

  async function exchange(): Promise<Exchanged> {
    const { assertion, exp, jti } = await readAssertion();
    const now = epochSeconds(deps.now());
    const digest = createHash('sha256').update(assertion).digest('base64url');
    if (current && current.assertionDigest === digest) {
      // Exchanged already, and its jti is spent: keep the token it bought while it lives.
      if (now < current.exp) return current;
      throw credentialError('factory_credential_spent', `The service-account token in ${file} was already exchanged and the kubelet has not replaced it yet`);
    }
    if (exp !== undefined && exp + deps.clockTolerance <= now) {
      throw credentialError('factory_credential_expired', `The service-account token in ${file} expired at ${new Date(exp * 1000).toISOString()}: the kubelet has not refreshed it`);
    }
    const answer = await deps.client.request({
      dependency: 'jwt-factory',
      method: 'POST',
      url: `${deps.factoryUrl}/token`,
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ grant_type: JWT_BEARER_GRANT, assertion, audience: deps.issuer }).toString(),
    });
    if (answer.status === 400 || answer.status === 401) {
      const refusal = oauthRefusal.safeParse(safeJson(answer.text));
      const why = refusal.success ? `${refusal.data.error}${refusal.data.error_description ? ` (${refusal.data.error_description})` : ''}` : `status ${answer.status}`;
      throw credentialError('factory_credential_refused', `jwt-factory refused the service-account token in ${file}: ${why}`);
    }
    if (answer.status !== 200) throw dependencyError('jwt-factory', 'bad_answer', `jwt-factory answered ${answer.status} to the jwt-bearer grant`);
    const token = parseAnswer('jwt-factory', answer, tokenAnswer).access_token;
    const claims = safeClaims(token);
    const refreshAt = refreshInstant(token, 60);
    if (claims?.exp === undefined || refreshAt === undefined) throw dependencyError('jwt-factory', 'bad_answer', 'jwt-factory answered the jwt-bearer grant with a token without exp');
    deps.logger.info({ assertionJti: jti, jti: claims.jti, exp: claims.exp }, 'exchanged the service-account token for a factory access token');
    return { authorization: `Bearer ${token}`, refreshAt, exp: claims.exp, assertionDigest: digest };
  }

  return {
    async authorization() {
      if (current && epochSeconds(deps.now()) < current.refreshAt) return current.authorization;
      inFlight ??= exchange()
        .then((next) => (current = next))
        .finally(() => (inFlight = undefined));
      return (await inFlight).authorization;
    },
    refused(authorization) {
      if (current?.authorization === authorization) current = { ...current, refreshAt: 0, exp: 0 };
    },
  };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function safeClaims(token: string): { exp?: number; jti?: string } | undefined {
  try {
    const claims = decodeJwt(token);
    return { exp: typeof claims.exp === 'number' ? claims.exp : undefined, jti: typeof claims.jti === 'string' ? claims.jti : undefined };
  } catch {
    return undefined;
  }
}
