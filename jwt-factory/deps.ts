import type { Logger } from '../lib/logger.js';
import type { FactoryConfig } from './config.js';
import type { Clock } from './keys.js';
import type { KeyStore } from './keystore.js';
import type { FactoryMetrics } from './metrics.js';
import type { OidcProvider } from './oidc/provider.js';
import type { StoreHealth } from './store/types.js';

/** What the factory's routes need: passed to createApp, so tests build an app with their own store and clock. */
export interface FactoryDeps {
  config: FactoryConfig;
  keystore: KeyStore;
  logger: Logger;
  clock: Clock;
  /** The app's Prometheus metrics; createApp makes a fresh registry when none is given. */
  metrics?: FactoryMetrics;
  /** The OpenID Connect provider, when OIDC_CONFIG is set. */
  oidc?: OidcProvider;
  /** What the stores beside the keys (the OIDC store) lack to be ready, for /readyz. */
  health?: () => StoreHealth;
}
