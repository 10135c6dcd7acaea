import { Router, type IRouter, type Request, type Response } from 'express';
import { AppError, badRequest } from '../../lib/errors.js';
import { sendBody, sendJson } from '../../lib/http.js';
import { TokenError } from '../../lib/jwt.js';
import { assertKeyId } from '../../lib/keyid.js';
import type { FactoryDeps } from '../deps.js';
import { issueToken, parseClaims, verifyToken, type IssuedToken } from '../tokens.js';
import { issueVariant, VARIANTS, type Variant } from '../variants.js';
import { requireKey } from './keys.js';

/** `?ttl=N`: whole seconds, 1..MAX_TOKEN_TTL. */
function parseTtl(raw: unknown, deps: FactoryDeps): number {
  if (raw === undefined || raw === '') return deps.config.TOKEN_TTL;
  const ttl = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(ttl) || ttl < 1 || ttl > deps.config.MAX_TOKEN_TTL) {
    throw badRequest(`ttl must be a whole number of seconds between 1 and ${deps.config.MAX_TOKEN_TTL}`, 'invalid_ttl');
  }
  return ttl;
}

/** `?variant=name`: one of VARIANTS, or absent. */
function parseVariant(raw: unknown): Variant | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (typeof raw === 'string' && (VARIANTS as readonly string[]).includes(raw)) return raw as Variant;
  throw badRequest(`variant must be one of ${VARIANTS.join(', ')}`, 'invalid_variant');
}

const truthy = (raw: unknown) => raw === '1' || raw === 'true' || raw === 'yes';

/**
 * JSON when asked with `?format=json` or when the Accept header names application/json and not
 * text/plain. A client that lists both (axios by default sends application/json, text/plain and the
 * wildcard) gets the text the original sample always answered, so existing callers keep reading a bare token.
 */
export function wantsJson(req: Request): boolean {
  if (req.query.format === 'json') return true;
  if (req.query.format === 'text') return false;
  const accept = req.get('accept') ?? '';
  return /\bapplication\/json\b/i.test(accept) && !/\btext\/plain\b/i.test(accept) && req.accepts('application/json') !== false;
}

/**
 * The size guard: a token travels in a header; Envoy caches tokens under 4 KiB and 8 KiB is a
 * common header limit. Over TOKEN_SIZE_WARN: a Warning header and a log line. Over
 * TOKEN_SIZE_LIMIT with TOKEN_SIZE_POLICY=refuse: 422 (unless the oversize token was asked for).
 */
export function sizeWarnings(deps: FactoryDeps, issued: IssuedToken, requestedOversize: boolean): string[] {
  const { TOKEN_SIZE_WARN, TOKEN_SIZE_LIMIT, TOKEN_SIZE_POLICY } = deps.config;
  if (issued.bytes > TOKEN_SIZE_LIMIT && TOKEN_SIZE_POLICY === 'refuse' && !requestedOversize) {
    throw new AppError('token_too_large', 422, `The token would be ${issued.bytes} bytes, over TOKEN_SIZE_LIMIT (${TOKEN_SIZE_LIMIT}); send fewer or smaller claims`, {
      details: { bytes: issued.bytes, limit: TOKEN_SIZE_LIMIT },
    });
  }
  if (issued.bytes <= TOKEN_SIZE_WARN) return [];
  const over = issued.bytes > TOKEN_SIZE_LIMIT ? `TOKEN_SIZE_LIMIT (${TOKEN_SIZE_LIMIT})` : `TOKEN_SIZE_WARN (${TOKEN_SIZE_WARN})`;
  deps.logger.warn({ kid: issued.kid, jti: issued.jti, bytes: issued.bytes }, 'issued token is large');
  return [`token is ${issued.bytes} bytes, over ${over}: headers this large may be refused or not cached by proxies`];
}

/** Sends an issued token as text (the original sample's answer) or as JSON. */
export function sendIssued(req: Request, res: Response, issued: IssuedToken, warnings: string[], extra: Record<string, unknown> = {}): void {
  res.locals.log = { ...res.locals.log, kid: issued.kid, jti: issued.jti };
  // RFC 7234 §5.5: warn-code 299 "Miscellaneous persistent warning".
  if (warnings.length > 0) res.set('Warning', warnings.map((w) => `299 - "${w.replace(/"/g, "'")}"`).join(', '));
  if (wantsJson(req)) {
    sendJson(res, 200, { ...issued, ...extra, ...(warnings.length > 0 ? { warnings } : {}) });
  } else {
    sendBody(res, 200, 'text/plain', issued.token);
  }
}

const nonEmpty = (value: unknown): value is string => typeof value === 'string' && value !== '';

/**
 * The body of POST /verify: `token`, `aud` (a string or a list of strings) and `sub`, and an
 * optional `iss`. The first field missing or of the wrong kind is the answer (400
 * `missing_field`, naming it); plain checks rather than a schema, as this runs on every call.
 */
function verifyFields(body: unknown): { token: string; aud: string | string[]; sub: string; iss?: string } {
  const fields = body ?? {};
  if (typeof fields !== 'object' || Array.isArray(fields)) {
    throw badRequest('The body must be a JSON object with token, aud and sub', 'missing_field', { field: '' });
  }
  const { token, aud, sub, iss } = fields as Record<string, unknown>;
  if (!nonEmpty(token)) throw badRequest('token is required', 'missing_field', { field: 'token' });
  if (!nonEmpty(aud) && !(Array.isArray(aud) && aud.length > 0 && aud.every(nonEmpty))) {
    throw badRequest('aud is required (a string or a list of strings)', 'missing_field', { field: 'aud' });
  }
  if (!nonEmpty(sub)) throw badRequest('sub is required', 'missing_field', { field: 'sub' });
  if (iss !== undefined && !nonEmpty(iss)) throw badRequest('iss must be a non-empty string when given', 'missing_field', { field: 'iss' });
  return { token, aud, sub, ...(iss === undefined ? {} : { iss }) };
}

/**
 * Issuance and verification: `/issueToken/:keyId` and `/verify/:keyId`, added to `router`
 * (a router of their own by default; the factory's app adds them to itself, so the calls a
 * mesh makes on every request do not enter a nested router).
 */
export function tokensRouter<T extends IRouter>(deps: FactoryDeps, router: T = Router() as T): T {
  router.post('/issueToken/:keyId', async (req, res) => {
    const keyId = assertKeyId(req.params.keyId);
    // The provider's key signs only what the provider decided (a logged-in user, an authenticated client).
    if (deps.oidc && keyId === deps.config.OIDC_KEY_ID) {
      throw new AppError('key_reserved', 403, `keyId ${keyId} is the OpenID Connect provider's key (OIDC_KEY_ID): get its tokens from POST /token`);
    }
    const claims = parseClaims(req.body);
    const ttl = parseTtl(req.query.ttl, deps);
    const variant = parseVariant(req.query.variant);
    // Like the original sample, issuing for an unknown keyId creates its key (as GET /keys does).
    const { entry } = await deps.keystore.getOrCreate(keyId);
    res.locals.log = { keyId };
    const options = { issuer: deps.config.ISSUER, ttl, expired: truthy(req.query.expired), now: deps.clock() };
    if (variant) {
      const { verdict, ...issued } = await issueVariant(variant, entry, claims, { ...options, sizeLimit: deps.config.TOKEN_SIZE_LIMIT });
      res.set('X-Token-Variant', variant);
      sendIssued(req, res, issued, sizeWarnings(deps, issued, variant === 'oversize'), { verdict });
      return;
    }
    const issued = await issueToken(entry, claims, options);
    let warnings: string[];
    try {
      warnings = sizeWarnings(deps, issued, false);
    } catch (err) {
      deps.metrics?.issued(keyId, entry.alg, 'refused');
      throw err;
    }
    deps.metrics?.issued(keyId, entry.alg, 'ok');
    sendIssued(req, res, issued, warnings);
  });

  router.post('/verify/:keyId', async (req, res) => {
    assertKeyId(req.params.keyId);
    const { token, aud, sub, iss } = verifyFields(req.body);
    let entry = await requireKey(deps, req.params.keyId, res);
    // Always the factory's own issuer: a body's iss may narrow the check, never widen it to another issuer.
    const options = { issuer: deps.config.ISSUER, audience: aud, subject: sub, clockTolerance: deps.config.CLOCK_TOLERANCE, now: deps.clock(), maxBytes: deps.config.TOKEN_SIZE_LIMIT };
    try {
      if (iss !== undefined && iss !== deps.config.ISSUER) throw new TokenError('JsonWebTokenError', 'issuer_invalid', `jwt issuer invalid. expected: ${deps.config.ISSUER} (this factory verifies only its own tokens)`);
      let result;
      try {
        result = await verifyToken(entry, token, options);
      } catch (err) {
        // A kid we do not know may come from a rotation by another worker: re-read the disk once.
        if (!(err instanceof TokenError && err.code === 'unknown_kid')) throw err;
        entry = (await deps.keystore.reload(entry.keyId)) ?? entry;
        result = await verifyToken(entry, token, options);
      }
      res.locals.log = { ...res.locals.log, kid: result.kid, jti: result.payload.jti };
      deps.metrics?.verified(entry.keyId, entry.alg);
      sendJson(res, 200, { valid: true, claims: result.payload });
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      res.locals.log = { ...res.locals.log, reason: err.code };
      deps.metrics?.verified(entry.keyId, entry.alg, err.code);
      sendJson(res, 403, { valid: false, error: err.toJSON(), claims: {} });
    }
  });

  return router;
}
