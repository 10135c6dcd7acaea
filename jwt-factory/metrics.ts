import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { activeVersions, type Clock } from './keys.js';
import { nextRotationAt, policyOf, signingKeyAgeSeconds, type RotationPolicy } from './rotation.js';
import type { KeyStore } from './store/types.js';

/**
 * The factory's Prometheus metrics, in a registry of its own per app (two apps in one test
 * never share a counter). Per-key gauges are computed when scraped, from the store's memory.
 * Names follow the Prometheus conventions: `_total` counters, base units (seconds).
 */
export function createFactoryMetrics(options: { keystore: KeyStore; clock: Clock; rotation: RotationPolicy; processMetrics?: boolean }) {
  const { keystore, clock, rotation } = options;
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
    help: 'Versions of each key in the JWKS (or verifying, for HS256)',
    labelNames: ['key_id'],
    registers: [registry],
    collect() {
      this.reset();
      const now = clock();
      for (const entry of keystore.entries()) this.set({ key_id: entry.keyId }, activeVersions(entry, now).length);
    },
  });
  new Gauge({
    name: 'jwt_factory_signing_key_age_seconds',
    help: 'How long the version signing now has been signing, per key',
    labelNames: ['key_id'],
    registers: [registry],
    collect() {
      this.reset();
      const now = clock();
      for (const entry of keystore.entries()) this.set({ key_id: entry.keyId }, signingKeyAgeSeconds(entry, now));
    },
  });
  new Gauge({
    name: 'jwt_factory_next_rotation_seconds',
    help: 'Seconds until the next automatic rotation publishes a new version, per key with rotation on',
    labelNames: ['key_id'],
    registers: [registry],
    collect() {
      this.reset();
      const now = clock().getTime();
      for (const entry of keystore.entries()) {
        const at = nextRotationAt(entry, policyOf(entry, rotation));
        if (at) this.set({ key_id: entry.keyId }, Math.max(0, (at.getTime() - now) / 1000));
      }
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
    issued: (keyId: string, alg: string, outcome: 'ok' | 'refused') => issued.inc({ key_id: keyId, alg, outcome }),
    verified(keyId: string, alg: string, failure?: string) {
      verified.inc({ key_id: keyId, alg, outcome: failure === undefined ? 'valid' : 'invalid' });
      if (failure !== undefined) failures.inc({ reason: failure });
    },
    jwks: (status: 200 | 304) => jwks.inc({ status: String(status) }),
    /** The store with its operations that may reach the disk or the database timed (reads from memory are not). */
    instrument(store: KeyStore): KeyStore {
      return {
        ...store,
        get: (keyId) => timed('get', () => store.get(keyId)),
        reload: (keyId) => timed('reload', () => store.reload(keyId)),
        getOrCreate: (keyId, alg) => timed('get_or_create', () => store.getOrCreate(keyId, alg)),
        rotate: (keyId, ahead) => timed('rotate', () => store.rotate(keyId, ahead)),
        setRotationInterval: (keyId, seconds) => timed('set_rotation_interval', () => store.setRotationInterval(keyId, seconds)),
        dump: () => timed('dump', () => store.dump()),
      };
    },
  };
}

export type FactoryMetrics = ReturnType<typeof createFactoryMetrics>;
