import express, { type Express, type Request, type Response } from 'express';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { AppError } from '../lib/errors.js';
import { errorMiddleware, notFoundHandler, requestLogger } from '../lib/http.js';
import type { Logger } from '../lib/logger.js';
import type { HttpClient } from '../lib/httpclient.js';
import type { ServiceConfig } from './config.js';
import type { SelfKeyStore } from './selfkeys.js';
import type { PeerKeys } from './peerkeys.js';
import { createPeerKeys } from './peerkeys.js';
import { runDelegationScenario, runIdTokenScenario, runScenario, runUserScenario } from './scenarios.js';
import { createTokenCache } from './tokencache.js';
import { createFactoryAuth } from './factoryauth.js';
import { createServiceMetrics, type VerifiedBy } from './metrics.js';
import { createVerifyCache } from './verifycache.js';
import { verifyIdToken, verifySelfSigned, verifyUserToken, verifyWithFactory, type Verdict } from './verify.js';

/** Everything a service needs, built by main (or a test) and passed in. */
export interface AppDeps {
  config: ServiceConfig;
  logger: Logger;
  client: HttpClient;
  /** servicea's own key pair; only servicea has one (and serves the scenario routes). */
  selfKeys?: SelfKeyStore;
  peerKeys: PeerKeys;
  /** The factory's published keys, for user tokens (scenario 5); default: its JWKS at FACTORY_URL. */
  factoryKeys?: PeerKeys;
  now: () => Date;
}

/** RFC 6750 §2.1: `Authorization: Bearer <token>`; the scheme is case-insensitive. */
function bearerToken(req: Request): string | undefined {
  const match = /^Bearer[ ]+([^ ]+)[ ]*$/i.exec(req.get('authorization') ?? '');
  return match?.[1];
}

/** Token ids for the request log: kid and jti, read without trusting them, never the token. */
function tokenIds(token: string): Record<string, unknown> {
  const ids: Record<string, unknown> = {};
  try {
    ids.kid = decodeProtectedHeader(token).kid;
    ids.jti = decodeJwt(token).jti;
  } catch {
    /* unreadable token: nothing to log */
  }
  return ids;
}

/** 401 with the RFC 6750 challenge: the route needs a Bearer token. */
function askForToken(res: Response, realm: string, message: string): void {
  res.set('WWW-Authenticate', `Bearer realm="${realm}"`);
  res.status(401).json({ error: { code: 'token_missing', message } });
}

const isExpiredFlag = (value: unknown) => value === '1' || value === 'true';

/** Builds the express app of one service; only main listens. */
export function createApp(deps: AppDeps): Express {
  const { config } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(requestLogger(deps.logger));

  app.get('/hello', (_req, res) => {
    res.json({ service: config.serviceName, message: `Hello from ${config.serviceName}` });
  });
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  const metrics = createServiceMetrics(config.serviceName);
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  // Receivers: every service answers the -server routes with its own name as the audience.
  const receive = (by: VerifiedBy, verify: (token: string) => Promise<Verdict>) => async (req: Request, res: Response) => {
    const token = bearerToken(req);
    if (token === undefined) {
      metrics.received(by, 'missing');
      return askForToken(res, config.serviceName, 'A Bearer token is required in the Authorization header');
    }
    const verdict = await verify(token);
    if (verdict.valid) metrics.received(by, 'valid');
    else metrics.received(by, 'invalid', verdict.error.code ?? verdict.error.name);
    res.locals.log = { ...tokenIds(token), valid: verdict.valid, ...(verdict.valid ? {} : { reason: verdict.error.code ?? verdict.error.name }) };
    res.status(verdict.valid ? 200 : 403).json(verdict);
  };
  const viaFactory = receive('factory', (token) => verifyWithFactory(deps.client, config.factoryUrl, token, config.serviceName, config.issuer));
  // One cache per app: the options below (issuer, audience = this service, subject) are fixed
  // for every token it holds, so a hit means the same checks passed.
  const verified = createVerifyCache(config.verifyCacheSize);
  const selfSigned = receive('self', async (token) => {
    const now = deps.now();
    const claims = verified.lookup(token, now, config.clockTolerance);
    if (claims) return { valid: true, claims };
    const verdict = await verifySelfSigned(deps.peerKeys, token, { issuer: config.selfIssuer, audience: config.serviceName, clockTolerance: config.clockTolerance, now });
    if (verdict.valid) verified.insert(token, verdict.claims);
    return verdict;
  });
  app.get('/scenario1-server', viaFactory);
  app.get('/scenario2-server', viaFactory);
  app.get('/scenario3-server', selfSigned);
  app.get('/scenario4-server', selfSigned);
  const factoryKeys = deps.factoryKeys ?? createPeerKeys({ source: 'jwks', dependency: 'jwt-factory', jwksBaseUrl: config.factoryUrl, dir: '', client: deps.client, now: deps.now });
  const userToken = receive('user', (token) => verifyUserToken(factoryKeys, token, { issuer: config.issuer, audience: config.serviceName, clockTolerance: config.clockTolerance, now: deps.now() }));
  app.get('/scenario5-server', userToken);
  // Scenario 6's id token was checked by the sidecar; serviceb checks it again rather than trust the network.
  app.get('/scenario6-server', receive('user', (token) => verifyIdToken(factoryKeys, token, { issuer: config.issuer, audience: config.idTokenAudience, clockTolerance: config.clockTolerance, now: deps.now() })));
  // Scenario 7's exchanged token is a user token too: its act claim names the service acting for the user.
  app.get('/scenario7-server', userToken);

  const selfKeys = deps.selfKeys;
  if (selfKeys) {
    const tokens = createTokenCache({ now: deps.now });
    const factoryAuth = createFactoryAuth({
      credential: config.factoryCredential,
      client: deps.client,
      factoryUrl: config.factoryUrl,
      issuer: config.issuer,
      clockTolerance: config.clockTolerance,
      now: deps.now,
      logger: deps.logger,
    });
    app.get('/.well-known/jwks.json', (_req, res) => {
      res.set('Cache-Control', 'public, max-age=60');
      res.json(selfKeys.jwks());
    });
    // Creates the key pair once; later calls return the same public key (no silent rotation).
    app.post('/gen-keys', async (_req, res) => {
      const { key, created } = await selfKeys.ensure();
      res.locals.log = { kid: key.kid, created };
      res.status(created ? 201 : 200).json({ created, kid: key.kid, alg: key.alg, publicJwk: key.publicJwk });
    });
    for (const n of [1, 2, 3, 4] as const) {
      app.get(`/scenario${n}`, async (req, res) => {
        const expired = isExpiredFlag(req.query.expired);
        const run = await runScenario({ config, client: deps.client, selfKeys, tokens, factoryAuth, now: deps.now }, n, expired);
        res.locals.log = { scenario: n, expired, sent: run.sent };
        res.json(run.result);
      });
    }
    // Scenarios 5-7: the caller is a logged-in user's client; servicea passes the user's token on
    // (her access token to serviceb, or her id token through serviceb's sidecar), or exchanges it.
    const userScenarios = [[5, runUserScenario, 'access token'], [6, runIdTokenScenario, 'id token'], [7, runDelegationScenario, 'access token']] as const;
    for (const [n, run, kind] of userScenarios) {
      app.get(`/scenario${n}`, async (req, res) => {
        // The user's token is hers, not servicea's to mint: servicea cannot make it expired, and
        // running the valid variant instead would answer a question nobody asked.
        if (req.query.expired !== undefined) throw new AppError('expired_not_applicable', 400, `Scenario ${n} passes the user's own ${kind} on, which servicea cannot make expired: send one that has expired (README: the expired variants of scenarios 5-7)`, { expose: true });
        const token = bearerToken(req);
        if (token === undefined) return askForToken(res, config.serviceName, `Scenario ${n} needs the user's ${kind}: send it as Authorization: Bearer`);
        const outcome = await run({ config, client: deps.client }, token);
        res.locals.log = { scenario: n, ...tokenIds(token) };
        res.json(outcome.result);
      });
    }
  }

  app.use(notFoundHandler);
  app.use(errorMiddleware(deps.logger));
  return app;
}
