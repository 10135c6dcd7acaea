import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { activeVersions, type Clock } from './keys.js';
import { nextRotationAt, policyOf, signingKeyAgeSeconds, type RotationPolicy } from './rotation.js';
import type { KeyEntry } from './keys.js';
import type { KeyStore } from './store/types.js';

/** The key_id of every keyId past METRICS_KEY_LABELS: parentheses are not allowed in a keyId, so it names none. */
export const OTHER_KEYS = '(other)';

/** When a keyId was created, as far as its entry tells: its oldest version still held. */
const createdAt = (entry: KeyEntry): number => Math.min(...[entry.current, ...entry.previous].map((v) => v.createdAt.getTime()));

/**
 * The key_id label of each keyId: the first `limit` keyIds by creation keep their own, all
 * later ones share OTHER_KEYS, so MAX_KEYS keyIds (100 000 by default, created by anyone who
 * may issue) never make 100 000 series. At start the order is that of the oldest version each
 * key holds; keys created afterwards join while there is room, so a labelled keyId stays
 * labelled for the life of the process and new keys never push an old one out.
 */
function createKeyLabels(keystore: KeyStore, limit: number) {
  let labelled: Set<string> | undefined;
  const seed = () =>
    new Set(
      keystore
        .entries()
        .map((entry) => ({ keyId: entry.keyId, at: createdAt(entry) }))
        .sort((x, y) => x.at - y.at || (x.keyId < y.keyId ? -1 : 1))
        .slice(0, limit)
        .map((k) => k.keyId),
    );
  keystore.onChange((keyId) => {
    if (labelled && labelled.size < limit) labelled.add(keyId);
  });
  return (keyId: string): string => {
    labelled ??= seed();
    return labelled.has(keyId) ? keyId : OTHER_KEYS;
  };
}

/**
 * The factory's Prometheus metrics, in a registry of its own per app (two apps in one test
 * never share a counter). Per-key gauges are computed when scraped, from the store's memory.
 * Names follow the Prometheus conventions: `_total` counters, base units (seconds).
 */
export function createFactoryMetrics(options: { keystore: KeyStore; clock: Clock; rotation: RotationPolicy; processMetrics?: boolean; keyLabels?: number }) {
  const { keystore, clock, rotation } = options;
  const label = createKeyLabels(keystore, options.keyLabels ?? 100);
  /** One value per key_id label: a labelled key's own, or the keys past the limit folded by `fold`. */
  const perLabel = (values: Iterable<[string, number]>, fold: (a: number, b: number) => number): Map<string, number> => {
    const out = new Map<string, number>();
    for (const [keyId, value] of values) {
      const name = label(keyId);
      const known = out.get(name);
      out.set(name, known === undefined ? value : fold(known, value));
    }
    return out;
  };
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  const issued = new Counter({ name: 'jwt_factory_tokens_issued_total', help: 'Tokens issued, by keyId, alg and outcome', labelNames: ['key_id', 'alg', 'outcome'], registers: [registry] });
  const verified = new Counter({ name: 'jwt_factory_tokens_verified_total', help: 'POST /verify answers, by keyId, alg and outcome (valid or invalid)', labelNames: ['key_id', 'alg', 'outcome'], registers: [registry] });
  const failures = new Counter({ name: 'jwt_factory_verification_failures_total', help: 'Refused verifications by reason (the error code)', labelNames: ['reason'], registers: [registry] });
  const jwks = new Counter({ name: 'jwt_factory_jwks_requests_total', help: 'JWKS requests by status (200, or 304 for a matching ETag)', labelNames: ['status'], registers: [registry] });
  const storeOps = new Histogram({
    name: 'jwt_factory_store_operation_seconds',
    help: 'Key store operations that reach the disk or the database, by operation and outcome',
    labelNames: ['operation', 'outcome'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });

  new Gauge({
    name: 'jwt_factory_key_versions_published',
    help: `Versions of each key in the JWKS (or verifying, for HS256); key_id="${OTHER_KEYS}": their sum over the keys past METRICS_KEY_LABELS`,
    labelNames: ['key_id'],
    registers: [registry],
    collect() {
      this.reset();
      const now = clock();
      const values = perLabel(keystore.entries().map((e) => [e.keyId, activeVersions(e, now).length]), (a, b) => a + b);
      for (const [key_id, value] of values) this.set({ key_id }, value);
    },
  });
  new Gauge({
    name: 'jwt_factory_signing_key_age_seconds',
    help: `How long the version signing now has been signing, per key; key_id="${OTHER_KEYS}": the oldest of the keys past METRICS_KEY_LABELS`,
    labelNames: ['key_id'],
    registers: [registry],
    collect() {
      this.reset();
      const now = clock();
      const values = perLabel(keystore.entries().map((e) => [e.keyId, signingKeyAgeSeconds(e, now)]), Math.max);
      for (const [key_id, value] of values) this.set({ key_id }, value);
    },
  });
  new Gauge({
    name: 'jwt_factory_next_rotation_seconds',
    help: `Seconds until the next automatic rotation publishes a new version, per key with rotation on; key_id="${OTHER_KEYS}": the soonest of the keys past METRICS_KEY_LABELS`,
    labelNames: ['key_id'],
    registers: [registry],
    collect() {
      this.reset();
      const now = clock().getTime();
      const due: Array<[string, number]> = [];
      for (const entry of keystore.entries()) {
        const at = nextRotationAt(entry, policyOf(entry, rotation));
        if (at) due.push([entry.keyId, Math.max(0, (at.getTime() - now) / 1000)]);
      }
      for (const [key_id, value] of perLabel(due, Math.min)) this.set({ key_id }, value);
    },
  });
  new Gauge({
    name: 'jwt_factory_key_store_ready',
    help: '1 while the key store is loaded and its database (if any) reachable',
    registers: [registry],
    collect() {
      this.set(keystore.health().ready ? 1 : 0);
    },
  });

  /** Times one store call, labelled by its outcome (ok or the error code). */
  async function timed<T>(operation: string, work: () => Promise<T>): Promise<T> {
    const end = storeOps.startTimer({ operation });
    try {
      const result = await work();
      end({ outcome: 'ok' });
      return result;
    } catch (err) {
      end({ outcome: (err as { code?: unknown }).code === undefined ? 'error' : String((err as { code: unknown }).code) });
      throw err;
    }
  }

  return {
    registry,
    issued: (keyId: string, alg: string, outcome: 'ok' | 'refused') => issued.inc({ key_id: label(keyId), alg, outcome }),
    verified(keyId: string, alg: string, failure?: string) {
      verified.inc({ key_id: label(keyId), alg, outcome: failure === undefined ? 'valid' : 'invalid' });
      if (failure !== undefined) failures.inc({ reason: failure });
    },
    jwks: (status: 200 | 304) => jwks.inc({ status: String(status) }),
    /**
     * The store with its operations that may reach the disk or the database timed. Reads from
     * memory are not: every store keeps each keyId it has answered or heard of in memory, and
     * keys are never deleted, so get and getOrCreate of such a keyId never leave the process
     * (on /verify and /issueToken, timing them cost as much as the read).
     */
    instrument(store: KeyStore): KeyStore {
      const held = new Set<string>();
      const hold = <T extends { keyId: string } | undefined>(entry: T): T => {
        if (entry) held.add(entry.keyId);
        return entry;
      };
      store.onChange((keyId) => held.add(keyId));
      return {
        ...store,
        get: (keyId) => (held.has(keyId) ? store.get(keyId) : timed('get', () => store.get(keyId).then(hold))),
        reload: (keyId) => timed('reload', () => store.reload(keyId).then(hold)),
        getOrCreate: (keyId, alg) =>
          held.has(keyId)
            ? store.getOrCreate(keyId, alg)
            : timed('get_or_create', async () => {
                const found = await store.getOrCreate(keyId, alg);
                hold(found.entry);
                return found;
              }),
        rotate: (keyId, ahead) => timed('rotate', () => store.rotate(keyId, ahead)),
        setRotationInterval: (keyId, seconds) => timed('set_rotation_interval', () => store.setRotationInterval(keyId, seconds)),
        dump: () => timed('dump', () => store.dump()),
      };
    },
  };
}

export type FactoryMetrics = ReturnType<typeof createFactoryMetrics>;
