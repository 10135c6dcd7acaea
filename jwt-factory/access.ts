import { Router, type Request, type Response } from 'express';
import { AppError, badRequest } from '../lib/errors.js';
import { assertKeyId } from '../lib/keyid.js';
import type { FactoryDeps } from './deps.js';
import { ADMIN_SCOPE, bearerCaller, clientCaller, type Caller } from './oidc/caller.js';
import { forwardedPeer } from './oidc/clientauth.js';
import { allowedAudiences, ownedKeyIds } from './oidc/config.js';
import type { ProviderContext } from './oidc/context.js';
import { OAuthError } from './oidc/errors.js';

/**
 * ISSUE_AUTH=client: who may get which token. Guards mounted before the factory's routes, on
 * exactly the calls that mint or manage keys; each one authenticates the caller and, when
 * allowed, hands the request on unchanged except for the claims the caller may not choose.
 */

/** What the caller sends to prove who it is in a JSON body (client_secret_post, RFC 7523 §2.2), never a claim. */
const CREDENTIAL_FIELDS = ['client_id', 'client_secret', 'client_assertion', 'client_assertion_type'] as const;

/** Claims that say who issued the token and for whom: the factory's and the caller's, never the body's. */
const BOUND_CLAIMS = ['iss', 'sub'] as const;

/** RFC 7235 §4.1: one challenge per scheme the caller may use. */
const CLIENT_CHALLENGE = 'Basic realm="jwt-factory", Bearer realm="jwt-factory"';

const bearerOf = (req: Request): string | undefined => {
  const header = req.get('authorization');
  if (header === undefined || !/^Bearer\b/i.test(header)) return undefined;
  const token = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(header)?.[1];
  if (token === undefined) throw new OAuthError('invalid_request', 'The Authorization header must be Bearer <token>');
  return token;
};

/** The body as an object (absent = `{}`); the claims parser refuses anything else later, with its own code. */
const bodyOf = (req: Request): Record<string, unknown> => (req.body && typeof req.body === 'object' && !Array.isArray(req.body) ? (req.body as Record<string, unknown>) : {});

/**
 * Authenticates the caller: a bearer access token of this issuer, else the client's own method
 * (its mTLS identity for tls_client_auth); 401s carry a challenge.
 */
async function callerOf(ctx: ProviderContext, req: Request, res: Response, challenge: string): Promise<Caller> {
  try {
    const forwardedClientCert = req.get('x-forwarded-client-cert');
    const token = bearerOf(req);
    if (token !== undefined) {
      // A bearer does not need the certificate, but a header this factory does not trust is refused on every call.
      forwardedPeer(ctx, forwardedClientCert);
      return await bearerCaller(ctx, token);
    }
    const body = bodyOf(req);
    const params: Record<string, string> = {};
    for (const field of CREDENTIAL_FIELDS) {
      const value = body[field];
      if (value === undefined) continue;
      if (typeof value !== 'string') throw new OAuthError('invalid_request', `${field} must be a string`);
      params[field] = value;
    }
    return await clientCaller(ctx, { authorization: req.get('authorization'), params, forwardedClientCert });
  } catch (err) {
    if (err instanceof OAuthError && err.status === 401) res.set('WWW-Authenticate', challenge);
    throw err;
  }
}

/** The guards of ISSUE_AUTH=client; nothing in open mode. */
export function accessRouter(deps: FactoryDeps): Router | undefined {
  if (deps.config.ISSUE_AUTH === 'open') return undefined;
  // loadFactoryConfig refuses client mode without OIDC_CONFIG; this is the same rule for an app built by hand.
  if (!deps.oidc) throw new Error('ISSUE_AUTH=client needs the OpenID Connect provider (OIDC_CONFIG): its clients are the callers');
  const ctx = deps.oidc.context;
  const router = Router();

  /** Creating, rotating and dumping keys: an access token with scope factory:admin (RFC 6750 §3.1 challenges). */
  const requireAdmin = async (req: Request, res: Response) => {
    const challenge = `Bearer realm="jwt-factory", scope="${ADMIN_SCOPE}"`;
    if (req.get('authorization') === undefined) {
      forwardedPeer(ctx, req.get('x-forwarded-client-cert'));
      res.set('WWW-Authenticate', challenge);
      throw new OAuthError('invalid_token', `This call needs an access token with scope ${ADMIN_SCOPE}`);
    }
    const caller = await callerOf(ctx, req, res, challenge);
    res.locals.log = { ...res.locals.log, clientId: caller.client.client_id };
    if (!caller.scopes.has(ADMIN_SCOPE)) {
      res.set('WWW-Authenticate', `Bearer realm="jwt-factory", error="insufficient_scope", scope="${ADMIN_SCOPE}"`);
      throw new OAuthError('insufficient_scope', `This call needs scope ${ADMIN_SCOPE}`);
    }
  };

  router.post('/keys/:keyId/rotate', async (req, res, next) => {
    await requireAdmin(req, res);
    next();
  });
  for (const path of ['/utils/dump', '/dump']) {
    router.post(path, async (req, res, next) => {
      await requireAdmin(req, res);
      next();
    });
  }
  // Reading an existing key is public (its public half is in the JWKS anyway); creating one is not.
  const createGuard = async (req: Request, res: Response, next: () => void) => {
    const keyId = assertKeyId(req.params.keyId);
    if (!(await deps.keystore.get(keyId))) await requireAdmin(req, res);
    next();
  };
  router.get('/keys/:keyId', createGuard);
  router.post('/keys/:keyId', createGuard);

  router.post('/issueToken/:keyId', async (req, res, next) => {
    const keyId = assertKeyId(req.params.keyId);
    const caller = await callerOf(ctx, req, res, CLIENT_CHALLENGE);
    const { client } = caller;
    res.locals.log = { ...res.locals.log, clientId: client.client_id };
    if (!ownedKeyIds(client).includes(keyId)) {
      throw new AppError('key_not_owned', 403, `Client ${client.client_id} may not issue for keyId ${keyId} (its key_ids: ${ownedKeyIds(client).join(', ')})`);
    }
    const body = bodyOf(req);
    if (req.body !== undefined && req.body !== body) throw badRequest('The body must be a JSON object of claims', 'invalid_claims');
    const claims = Object.fromEntries(Object.entries(body).filter(([name]) => !(CREDENTIAL_FIELDS as readonly string[]).includes(name)));
    for (const name of BOUND_CLAIMS) {
      if (name in claims) throw badRequest(`claim ${name} is set by the factory (iss = its issuer, sub = the authenticated client)`, 'claim_not_allowed', { claim: name });
    }
    const allowed = allowedAudiences(client);
    const asked = claims.aud === undefined ? [allowed[0]!] : typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
    const refused = asked.filter((aud) => typeof aud === 'string' && !allowed.includes(aud));
    if (refused.length > 0) {
      throw new AppError('audience_not_allowed', 403, `Client ${client.client_id} may not ask for audience ${refused.join(', ')} (its audiences: ${allowed.join(', ')})`);
    }
    // The claims the token route parses: the body's own, bound to this caller.
    req.body = { ...claims, sub: caller.sub, ...(claims.aud === undefined ? { aud: allowed[0] } : {}) };
    next();
  });

  return router;
}
