import { z } from 'zod';
import { assertCompactForm } from '../lib/jwt.js';
import { AppError } from '../lib/errors.js';
import { dependencyError, parseAnswer, type HttpClient } from '../lib/httpclient.js';
import type { ServiceConfig } from './config.js';
import type { FactoryAuth } from './factoryauth.js';
import { signSelfToken, type SelfKeyStore } from './selfkeys.js';
import type { MintedToken, TokenCache } from './tokencache.js';
import { CALLER, type Verdict } from './verify.js';

/**
 * servicea's side of the four scenarios. Each obtains one token per receiver, presents it as
 * a Bearer token to the receiver's `/scenarioN-server` route, and answers with each
 * receiver's verdict keyed by receiver name: `{ serviceb: { status, valid, ... }, servicec: ... }`.
 * With `expired`, the token of the last receiver is expired and the others stay valid
 * (scenarios 1 and 3 have one receiver, so its token is the expired one).
 * Valid tokens come from the token cache (one per signing key and receiver, reused until
 * shortly before exp); an expired one is always minted afresh and never kept.
 */

export type Receiver = 'serviceb' | 'servicec';
export type ReceiverResult = Verdict & { status: number };
export type ScenarioResult = Partial<Record<Receiver, ReceiverResult>>;

export interface ScenarioDeps {
  config: ServiceConfig;
  client: HttpClient;
  selfKeys: SelfKeyStore;
  tokens: TokenCache;
  /** servicea's credential at the factory (ISSUE_AUTH=client). */
  factoryAuth: FactoryAuth;
  now: () => Date;
}

/** One token handed to one receiver, with the ids we may log. */
interface Minted {
  receiver: Receiver;
  token: string;
  jti?: string;
  kid?: string;
}

const RECEIVERS: Record<1 | 2 | 3 | 4, Receiver[]> = { 1: ['serviceb'], 2: ['serviceb', 'servicec'], 3: ['serviceb'], 4: ['serviceb', 'servicec'] };

/** Asks the factory for a token signed with servicea's factory key for one audience. */
async function factoryToken(deps: ScenarioDeps, audience: Receiver, expired: boolean): Promise<string> {
  const ask = async (authorization: string | undefined) =>
    deps.client.request({
      dependency: 'jwt-factory',
      method: 'POST',
      url: `${deps.config.factoryUrl}/issueToken/${CALLER}${expired ? '?expired=1' : ''}`,
      // The factory answers JSON to clients that prefer it; the contract's answer is the token as text.
      headers: { accept: 'text/plain', ...(authorization ? { authorization } : {}) },
      // No sub: the factory sets it (to the keyId when open, to the authenticated client otherwise).
      body: { aud: audience },
      // Each mint is independent: a retry gives another valid token and changes nothing else.
      idempotent: true,
    });
  const authorization = await deps.factoryAuth.authorization();
  let answer = await ask(authorization);
  if (answer.status === 401 && authorization?.startsWith('Bearer ')) {
    // A bearer the factory no longer takes (revoked, or its key gone): exchange afresh, once.
    deps.factoryAuth.refused(authorization);
    answer = await ask(await deps.factoryAuth.authorization());
  }
  if (answer.status !== 200) throw dependencyError('jwt-factory', 'bad_answer', `jwt-factory answered ${answer.status} to /issueToken/${CALLER}`);
  const token = answer.text.trim();
  try {
    assertCompactForm(token);
  } catch {
    throw dependencyError('jwt-factory', 'bad_answer', 'jwt-factory answered /issueToken with something that is not a compact JWT');
  }
  return token;
}

const verdictSchema = z.union([
  z.object({ valid: z.literal(true), claims: z.record(z.string(), z.unknown()) }),
  z.object({ valid: z.literal(false), error: z.object({ name: z.string(), message: z.string() }).passthrough(), claims: z.object({}).passthrough() }),
]);
const errorBodySchema = z.object({ error: z.object({ code: z.string(), dependency: z.string().optional() }).passthrough() });

/**
 * Presents a token to a receiver. 200 and 403 carry a verdict; any other answer (including
 * the receiver's own dependency failure) is a bad answer from that receiver, and says why.
 */
async function present(deps: Pick<ScenarioDeps, 'client'>, minted: Minted, url: string): Promise<ReceiverResult> {
  const answer = await deps.client.request({ dependency: minted.receiver, method: 'GET', url, headers: { authorization: `Bearer ${minted.token}` } });
  if (answer.status === 200 || answer.status === 403) {
    const body = safeJson(answer.text);
    if (body === undefined && answer.status === 403) return meshRefusal(answer.status, answer.text);
    return { status: answer.status, ...(parseAnswer(minted.receiver, answer, verdictSchema) as Verdict) };
  }
  const inner = errorBodySchema.safeParse(safeJson(answer.text));
  // Envoy's local replies (jwt_authn 401, RBAC 403) are plain text: the sidecar decided, not the receiver.
  if (answer.status === 401 && !inner.success) return meshRefusal(answer.status, answer.text);
  const upstream = inner.success ? { code: inner.data.error.code, ...(inner.data.error.dependency ? { dependency: inner.data.error.dependency } : {}) } : undefined;
  throw new AppError('dependency_bad_answer', 502, `${minted.receiver} answered ${answer.status}${upstream ? ` (${upstream.code}${upstream.dependency ? ` from ${upstream.dependency}` : ''})` : ''}`, {
    expose: true,
    details: { dependency: minted.receiver, upstream: { status: answer.status, ...upstream } },
  });
}

/** The receiver's sidecar refused the request: its status and Envoy's body (`Jwt is expired`, `RBAC: access denied`). */
function meshRefusal(status: number, text: string): ReceiverResult {
  return { status, valid: false, error: { name: 'MeshRefusal', code: 'mesh_refused', message: text.trim().slice(0, 200) }, claims: {} };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The ids of the tokens a scenario sent, for the request log line (never the tokens). */
export interface ScenarioRun {
  result: ScenarioResult;
  sent: { receiver: Receiver; jti?: string; kid?: string }[];
}

/** Runs scenario `n` (1–4) as servicea; `expired` makes the last receiver's token expired. */
export async function runScenario(deps: ScenarioDeps, n: 1 | 2 | 3 | 4, expired: boolean): Promise<ScenarioRun> {
  const receivers = RECEIVERS[n];
  const last = receivers[receivers.length - 1];
  const selfSigned = n >= 3;
  const key = selfSigned ? deps.selfKeys.current() : undefined;
  if (selfSigned && !key) throw new AppError('self_key_missing', 409, 'servicea has no key pair yet: call POST /gen-keys first');
  const minted: Minted[] = await Promise.all(
    receivers.map(async (receiver) => {
      const expiredOne = expired && receiver === last;
      const mint = (): Promise<MintedToken> =>
        key
          ? signSelfToken(key, {
              issuer: deps.config.selfIssuer,
              audience: receiver,
              subject: CALLER,
              ttlSeconds: deps.config.selfTokenTtl,
              now: deps.now(),
              expired: expiredOne,
            })
          : factoryToken(deps, receiver, expiredOne).then((token) => ({ token }));
      const cacheKey = key ? `self:${key.kid}:${receiver}` : `factory:${CALLER}:${receiver}`;
      const { token, jti } = expiredOne ? await mint() : await deps.tokens.get(cacheKey, mint);
      return { receiver, token, ...(jti ? { jti } : {}), ...(key ? { kid: key.kid } : {}) };
    }),
  );
  // Scenarios 1–2 travel over plain HTTP as in the original sample; 3–4 over HTTPS with the suite's CA.
  const results = await Promise.all(
    minted.map((m) => present(deps, m, `${selfSigned ? deps.config.httpsUrls[m.receiver] : deps.config.urls[m.receiver]}/scenario${n}-server`)),
  );
  const result: ScenarioResult = {};
  receivers.forEach((receiver, i) => {
    result[receiver] = results[i]!;
  });
  return { result, sent: minted.map(({ receiver, jti, kid }) => ({ receiver, jti, kid })) };
}

const exchangeSchema = z.object({ access_token: z.string().min(1) }).passthrough();

/**
 * RFC 8693 token exchange at the factory: the user's token becomes one for `audience`, with
 * servicea as the actor. Client credentials go form-urlencoded into Basic (RFC 6749 §2.3.1);
 * with tls_client_auth only client_id is sent (RFC 8705 §2) and servicea's sidecar presents its
 * certificate.
 */
async function exchangeToken(deps: Pick<ScenarioDeps, 'config' | 'client'>, subjectToken: string, audience: Receiver): Promise<string> {
  const { id, secret, method } = deps.config.oidcClient;
  if (method === 'client_secret_basic' && secret === undefined) throw new AppError('oidc_client_missing', 409, 'servicea has no OIDC_CLIENT_SECRET: scenario 7 exchanges tokens as an OIDC client');
  const authorization: Record<string, string> = secret === undefined ? {} : { authorization: `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}` };
  const answer = await deps.client.request({
    dependency: 'jwt-factory',
    method: 'POST',
    url: `${deps.config.factoryUrl}/token`,
    headers: { ...authorization, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      ...(method === 'tls_client_auth' ? { client_id: id } : {}),
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: subjectToken,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      audience,
    }).toString(),
  });
  // 400 from the provider is about the user's token (expired, revoked, another issuer): a verdict for the caller.
  if (answer.status === 400) {
    const error = (safeJson(answer.text) as { error?: string; error_description?: string } | undefined) ?? {};
    throw new AppError('token_exchange_refused', 403, `jwt-factory refused the token exchange: ${error.error ?? 'invalid_request'}`, { details: { oauthError: error.error, description: error.error_description } });
  }
  if (answer.status !== 200) throw dependencyError('jwt-factory', 'bad_answer', `jwt-factory answered ${answer.status} to the token exchange`);
  return parseAnswer('jwt-factory', answer, exchangeSchema).access_token;
}

/**
 * Scenario 7 as servicea: delegation. The user's token is exchanged for one whose audience is
 * servicec (RFC 8693, `act` naming servicea), which servicec verifies like scenario 5's.
 */
export async function runDelegationScenario(deps: Pick<ScenarioDeps, 'config' | 'client'>, token: string): Promise<ScenarioRun> {
  const exchanged = await exchangeToken(deps, token, 'servicec');
  const servicec = await present(deps, { receiver: 'servicec', token: exchanged }, `${deps.config.urls.servicec}/scenario7-server`);
  return { result: { servicec }, sent: [{ receiver: 'servicec' }] };
}

/**
 * Scenario 5 as servicea: a logged-in user's access token (the caller's Bearer token) goes on
 * to serviceb through serviceb's sidecar (whose rules admit a user's token on this route only),
 * and serviceb checks it against the factory's keys, its audience and scope.
 */
export async function runUserScenario(deps: Pick<ScenarioDeps, 'config' | 'client'>, token: string): Promise<ScenarioRun> {
  const serviceb = await present(deps, { receiver: 'serviceb', token }, `${deps.config.servicebMeshUrl}/scenario5-server`);
  return { result: { serviceb }, sent: [{ receiver: 'serviceb' }] };
}

/**
 * Scenario 6 as servicea: the WSO2 flow. The user's id token (from the password grant) goes to
 * serviceb through serviceb's sidecar, whose rules require it; serviceb then verifies it too.
 */
export async function runIdTokenScenario(deps: Pick<ScenarioDeps, 'config' | 'client'>, token: string): Promise<ScenarioRun> {
  const serviceb = await present(deps, { receiver: 'serviceb', token }, `${deps.config.servicebMeshUrl}/scenario6-server`);
  return { result: { serviceb }, sent: [{ receiver: 'serviceb' }] };
}
