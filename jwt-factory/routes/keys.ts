import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { badRequest, conflict, notFound } from '../../lib/errors.js';
import { assertKeyId } from '../../lib/keyid.js';
import { ALGORITHMS } from '../config.js';
import type { FactoryDeps } from '../deps.js';
import type { JwksDocument } from '../jwks.js';
import { activeVersions, signingVersion, type KeyEntry, type KeyVersion } from '../keys.js';
import { describeRotation, type RotationPolicy } from '../rotation.js';

/** `?publishAhead=N`: seconds the new key is published before it signs (Istio refetches JWKS every 20 min); 0 for a compromised key. */
const publishAheadQuery = z.coerce
  .number({ message: 'publishAhead must be a number of seconds' })
  .int('publishAhead must be whole seconds')
  .min(0, 'publishAhead must be at least 0')
  .max(86_400, 'publishAhead must be at most 86400');

/** `PUT /keys/:keyId/rotation` body: this key's own interval in seconds (0: never), or null for the factory's. */
const rotationBody = z.object({
  interval: z.number({ message: 'interval must be a number of seconds or null' }).int('interval must be whole seconds').min(0, 'interval must be at least 0').max(31_536_000, 'interval must be at most 31536000').nullable(),
});

const algQuery = z.enum(ALGORITHMS, { message: `alg must be one of ${ALGORITHMS.join(', ')}` }).optional();

/** base64 of a version's public PEM (the original sample's `publicKey`); nothing for HS256. */
const publicKeyOf = (version: KeyVersion) => (version.publicPem ? { publicKey: Buffer.from(version.publicPem).toString('base64') } : {});

/** The original sample's answer for the key that signs at `now`: base64 public PEM, plus kid and alg. */
export function describeKey(entry: KeyEntry, now: Date) {
  const signer = signingVersion(entry, now);
  return { keyId: entry.keyId, kid: signer.kid, alg: entry.alg, ...publicKeyOf(signer) };
}

/** Where a version stands at `now`: in the JWKS before it signs, signing, or rotated out and still verifying. */
export type VersionState = 'published' | 'signing' | 'verifying';

/**
 * Every version that still verifies at `now`, newest first, with its schedule and state: what a
 * console draws on a time axis and what an operator checks before a mesh refetches the JWKS.
 */
export function describeVersions(entry: KeyEntry, now: Date) {
  const signer = signingVersion(entry, now);
  return activeVersions(entry, now).map((v) => {
    const activateAt = v.activateAt ?? v.createdAt;
    const state: VersionState = v === signer ? 'signing' : activateAt.getTime() > now.getTime() ? 'published' : 'verifying';
    return { kid: v.kid, alg: v.alg, createdAt: v.createdAt.toISOString(), activateAt: activateAt.toISOString(), retireAt: v.retireAt?.toISOString() ?? null, state };
  });
}

/** keyIds one JWKS request may name: enough for any receiver, small enough to bound the work. */
const MAX_JWKS_KEY_IDS = 8;

/** Looks a keyId up (404 `key_not_found` when unknown) and records it for the request log. */
export async function requireKey(deps: FactoryDeps, rawKeyId: unknown, res: Response): Promise<KeyEntry> {
  const keyId = assertKeyId(rawKeyId);
  res.locals.log = { ...res.locals.log, keyId };
  const entry = await deps.keystore.get(keyId);
  if (!entry) throw notFound(`No key with keyId "${keyId}"`, 'key_not_found');
  return entry;
}

/** The factory's rotation settings as a policy. */
export const rotationDefaults = (deps: FactoryDeps): RotationPolicy => ({ interval: deps.config.ROTATION_INTERVAL, publishAhead: deps.config.ROTATION_PUBLISH_AHEAD });

/**
 * Sends a cached JWKS with its ETag and max-age, or 304 when the client already has it. The
 * max-age never reaches past the next scheduled change (a rotation, a retirement), so a cache
 * that honours it (RFC 9111 §5.2.2.1) refetches when the document is due to change.
 */
export function sendJwks(deps: FactoryDeps, doc: JwksDocument, req: Request, res: Response): void {
  res.set('ETag', doc.etag);
  const untilChange = Math.max(0, Math.floor((doc.changesAt - deps.clock().getTime()) / 1000));
  res.set('Cache-Control', `public, max-age=${Math.min(deps.config.JWKS_MAX_AGE, untilChange)}`);
  const ifNoneMatch = req.get('if-none-match');
  if (ifNoneMatch && ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === doc.etag)) {
    deps.metrics?.jwks(304);
    res.status(304).end();
    return;
  }
  deps.metrics?.jwks(200);
  res.type('application/json').send(doc.body);
}

/** Key management: create, rotate, per-key JWKS and the original sample's /utils routes. */
export function keysRouter(deps: FactoryDeps, jwks: { forEntries(entries: readonly KeyEntry[]): JwksDocument }): Router {
  const router = Router();

  const createKey = async (req: Request, res: Response) => {
    const keyId = assertKeyId(req.params.keyId);
    const parsed = algQuery.safeParse(typeof req.query.alg === 'string' && req.query.alg !== '' ? req.query.alg : undefined);
    if (!parsed.success) throw badRequest(parsed.error.issues[0]!.message, 'invalid_alg');
    const { entry, created } = await deps.keystore.getOrCreate(keyId, parsed.data);
    if (parsed.data !== undefined && parsed.data !== entry.alg) {
      throw conflict(`Key "${keyId}" exists with alg ${entry.alg}; rotate keeps the algorithm, a new keyId can use ${parsed.data}`, 'alg_mismatch');
    }
    const now = deps.clock();
    const description = describeKey(entry, now);
    res.locals.log = { keyId, kid: description.kid };
    res.json({ ...description, created, versions: describeVersions(entry, now), rotation: describeRotation(entry, rotationDefaults(deps)) });
  };
  router.get('/keys/:keyId', createKey);
  router.post('/keys/:keyId', createKey);

  router.post('/keys/:keyId/rotate', async (req, res) => {
    const keyId = assertKeyId(req.params.keyId);
    const ahead = publishAheadQuery.safeParse(req.query.publishAhead ?? String(deps.config.ROTATION_PUBLISH_AHEAD));
    if (!ahead.success) throw badRequest(ahead.error.issues[0]!.message, 'invalid_publish_ahead');
    const entry = await deps.keystore.rotate(keyId, ahead.data);
    if (!entry) throw notFound(`No key with keyId "${keyId}"`, 'key_not_found');
    const { current } = entry;
    res.locals.log = { keyId, kid: current.kid };
    const previous = activeVersions(entry, deps.clock())
      .slice(1)
      .map((v) => ({ kid: v.kid, retireAt: v.retireAt?.toISOString() }));
    // kid is the new key's; it signs from activateAt (now unless published ahead).
    res.json({ keyId, kid: current.kid, alg: entry.alg, ...publicKeyOf(current), activateAt: (current.activateAt ?? current.createdAt).toISOString(), previous });
  });

  router.put('/keys/:keyId/rotation', async (req, res) => {
    const keyId = assertKeyId(req.params.keyId);
    const parsed = rotationBody.safeParse(req.body ?? {});
    if (!parsed.success) throw badRequest(parsed.error.issues[0]!.message, 'invalid_rotation_interval');
    const { interval } = parsed.data;
    const publishAhead = deps.config.ROTATION_PUBLISH_AHEAD;
    if (interval !== null && interval > 0 && interval <= publishAhead) {
      throw badRequest(`interval must exceed ROTATION_PUBLISH_AHEAD (${publishAhead}): a key must sign for a while before the next one is published`, 'invalid_rotation_interval');
    }
    const entry = await deps.keystore.setRotationInterval(keyId, interval ?? undefined);
    if (!entry) throw notFound(`No key with keyId "${keyId}"`, 'key_not_found');
    res.locals.log = { keyId };
    res.json({ keyId, rotation: describeRotation(entry, rotationDefaults(deps)) });
  });

  // A comma-separated list serves those keys together: a mesh rule has one jwksUri per issuer
  // (istio/istio#19245), so a receiver that trusts two of the issuer's keys, and no others, names both.
  router.get('/keys/:keyId/jwks.json', async (req, res) => {
    const ids = [...new Set(String(req.params.keyId).split(','))];
    if (ids.length > MAX_JWKS_KEY_IDS) throw badRequest(`At most ${MAX_JWKS_KEY_IDS} keyIds in one JWKS`, 'too_many_key_ids');
    if (ids.length === 1) return sendJwks(deps, jwks.forEntries([await requireKey(deps, ids[0], res)]), req, res);
    // In a list, a key not made yet is left out (404 only when none exists): a mesh rule naming
    // the OIDC key keeps working on a factory without OIDC_CONFIG, where istiod would else hold a fake JWKS.
    const entries: KeyEntry[] = [];
    for (const id of ids) {
      const entry = await deps.keystore.get(assertKeyId(id));
      if (entry) entries.push(entry);
    }
    if (entries.length === 0) throw notFound(`No key with any of the keyIds ${ids.join(', ')}`, 'key_not_found');
    res.locals.log = { ...res.locals.log, keyIds: entries.map((e) => e.keyId) };
    sendJwks(deps, jwks.forEntries(entries), req, res);
  });

  router.get('/utils/publicKey/:keyId', async (req, res) => {
    const entry = await requireKey(deps, req.params.keyId, res);
    const { keyId: _keyId, ...description } = describeKey(entry, deps.clock());
    if (!('publicKey' in description)) throw notFound(`Key "${entry.keyId}" is symmetric (HS256): it has no public key`, 'no_public_key');
    res.json(description);
  });

  router.get('/utils/keys', (_req, res) => {
    res.json(deps.keystore.list());
  });

  const dump = async (_req: Request, res: Response) => {
    const keyIds = await deps.keystore.dump();
    res.json({ dumped: keyIds });
  };
  router.post('/utils/dump', dump);
  router.post('/dump', dump);

  return router;
}
