/**
 * Where the login at the gateway keeps its state: pending logins (state, nonce, PKCE verifier)
 * and sessions (the tokens). The browser holds only a random id; the store is keyed by the
 * SHA-256 of that id, so a copy of the store yields no cookie that works.
 *
 * One interface, so replicas can share a store (store-postgres.ts implements it over one
 * database); the memory store below serves one process.
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
  /**
   * Records that a session was used: its `lastSeenAt` and `expiresAt` only, never its tokens, and
   * only while it exists, so a touch cannot undo a refresh or a logout another request made meanwhile.
   */
  touch(key: string, lastSeenAt: number, expiresAt: number): Promise<void>;
  /** Present when several processes share the store: refreshes of one session take turns across all of them. */
  refreshLocks?: RefreshLocks;
}

/** What `claim` found: the session as stored now, and the lease when this caller got it. */
export interface RefreshClaim {
  record: SessionRecord;
  /** The lease's id; absent while another process holds a lease that has not run out. */
  lease?: string;
}

/**
 * Leases on a session's refresh, for a store that processes share. A refresh token may be used
 * once (RFC 9700 §4.14.2: the provider revokes the whole family on reuse), so of the processes
 * wanting to refresh one session only the holder of the lease asks the provider; the others
 * wait for its result. A lease runs out by itself (`ms` after its claim), so a process that died
 * holding one never wedges the session.
 */
export interface RefreshLocks {
  /** Claims the lease on the session at `key` for `ms`; undefined when there is no such session. */
  claim(key: string, ms: number): Promise<RefreshClaim | undefined>;
  /** Writes the refreshed tokens and ends the lease, unless another claim replaced `lease` after it ran out or the session was deleted (a logout): then false. */
  commit(key: string, lease: string, record: SessionRecord): Promise<boolean>;
  /** Ends the lease without writing (the refresh failed). */
  release(key: string, lease: string): Promise<void>;
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
    async touch(key, lastSeenAt, expiresAt) {
      const record = maps.session.get(key);
      if (!record || record.kind !== 'session') return;
      // Like a write: the key moves to the end of the order, the least recently used goes first.
      maps.session.delete(key);
      maps.session.set(key, { ...record, lastSeenAt, expiresAt });
    },
    size: () => maps.login.size + maps.session.size,
  };
}
