import { Counter } from 'prom-client';
import { createRegistry } from '../lib/metrics.js';

/** How a receiver checked a token: through the factory's /verify, itself against the peer's JWKS, or a user's token against the factory's JWKS. */
export type VerifiedBy = 'factory' | 'self' | 'user';

/**
 * A service's Prometheus metrics, in a registry of its own per app (no module-level state).
 * Receivers count what they answered, and why they refused.
 */
export function createServiceMetrics(service: string) {
  const registry = createRegistry({ labels: { service } });
  const received = new Counter({
    name: 'service_tokens_received_total',
    help: 'Tokens the -server routes checked, by how (factory, self or user) and outcome (valid, invalid, missing)',
    labelNames: ['verified_by', 'outcome'],
    registers: [registry],
  });
  const refused = new Counter({ name: 'service_verification_failures_total', help: 'Refused tokens by reason (the error code or name)', labelNames: ['reason'], registers: [registry] });
  return {
    registry,
    /** Records one -server answer: valid, invalid (with its reason) or missing. */
    received(by: VerifiedBy, outcome: 'valid' | 'invalid' | 'missing', reason?: string) {
      received.inc({ verified_by: by, outcome });
      if (reason !== undefined) refused.inc({ reason });
    },
  };
}
