/**
 * Where the login at the gateway keeps its state: pending logins (state, nonce, PKCE verifier)
 * and sessions (the tokens). The browser holds only a random id; the store is keyed by the
 * SHA-256 of that id, so a copy of the store yields no cookie that works.
 *
 * One interface, so replicas can share a store (the factory's PostgreSQL store implements the
 * same three calls); the memory store below serves one process.
 */

/** The tokens of one session, as the provider's token endpoint issued them. */
export interface SessionTokens {
  accessToken: string;
  idToken: string;
  refreshToken?: string;
  /** When the access token expires (ms since the epoch; from `expires_in`, RFC 6749 §5.1). */
  accessExpiresAt: number;
}

/** A logged-in browser. */
export interface SessionRecord {
  kind: 'session';
  /** The id token's `sub`, for logs. */
  sub: string;
  createdAt: number;
  lastSeenAt: number;
  /** When the store may forget it: the sooner of the absolute lifetime and the idle timeout. */
  expiresAt: number;
  tokens: SessionTokens;
  /** The id token's claims, for the claim headers. */
  idClaims: Record<string, unknown>;
}

/** A login under way, between the redirect to the provider and the callback. */
export interface LoginRecord {
  kind: 'login';
  state: string;
  nonce: string;
  codeVerifier: string;
  /** The path the browser asked for, to return to after the callback. */
  returnTo: string;
  expiresAt: number;
}

export type StoredRecord = SessionRecord | LoginRecord;

/** The store behind the login: get, set and delete by key; a record past `expiresAt` is gone. */
export interface SessionStore {
  get(key: string): Promise<StoredRecord | undefined>;
  set(key: string, record: StoredRecord): Promise<void>;
  delete(key: string): Promise<void>;
}

export interface MemoryStoreOptions {
  /** The clock (ms since the epoch). */
  now: () => number;
  /** Most records of each kind kept; past it the oldest written goes first, so a flood cannot fill memory. */
  maxEntries: number;
  /** How often expired records are swept, at most (ms of the injected clock). */
  sweepEveryMs?: number;
}

/**
 * A bounded in-memory store for one process; a restart logs every browser out. Logins under way
 * and sessions are bounded apart, so a flood of anonymous page loads (each starts a login) can
 * never push a logged-in browser out.
 */
export function createMemorySessionStore(options: MemoryStoreOptions): SessionStore & { size(): number } {
  const maps: Record<StoredRecord['kind'], Map<string, StoredRecord>> = { login: new Map(), session: new Map() };
  const sweepEvery = options.sweepEveryMs ?? 60_000;
  let lastSweep = options.now();
  const sweep = (now: number) => {
    if (now - lastSweep < sweepEvery) return;
    lastSweep = now;
    for (const map of Object.values(maps)) for (const [key, record] of map) if (record.expiresAt <= now) map.delete(key);
  };
  const find = (key: string) => maps.session.get(key) ?? maps.login.get(key);
  return {
    async get(key) {
      const now = options.now();
      sweep(now);
      const record = find(key);
      if (!record) return undefined;
      if (record.expiresAt <= now) {
        maps[record.kind].delete(key);
        return undefined;
      }
      return structuredClone(record);
    },
    async set(key, record) {
      sweep(options.now());
      maps.login.delete(key);
      maps.session.delete(key);
      // Re-inserting moves the key to the end of the Map's order: the oldest write is first.
      const map = maps[record.kind];
      map.set(key, structuredClone(record));
      while (map.size > options.maxEntries) map.delete(map.keys().next().value!);
    },
    async delete(key) {
      maps.login.delete(key);
      maps.session.delete(key);
    },
    size: () => maps.login.size + maps.session.size,
  };
}
