import path from 'node:path';
import { readIfExists, writeFileAtomic } from '../../lib/files.js';
import type { Clock } from '../keys.js';

/**
 * The provider's state, behind one small asynchronous interface so that a database can hold it
 * instead of files. Every record carries `expiresAt` (epoch ms) and is swept after it. Secrets
 * are never stored: codes, refresh tokens and session cookies are kept under their SHA-256
 * (`id`), so a copy of the store lets nobody redeem anything.
 */

/** An authorization code (RFC 6749 §4.1.2): single use, 60 s. */
export interface CodeRecord {
  id: string;
  clientId: string;
  redirectUri: string;
  scope: string;
  audience: string;
  codeChallenge: string | undefined;
  nonce: string | undefined;
  sub: string;
  authTime: number;
  sid: string;
  expiresAt: number;
  /** Set when the code was redeemed: a second redemption is a replay. */
  usedAt?: number;
  /** What the redemption issued, so that a replay can revoke it (RFC 6749 §4.1.2). */
  issued?: { familyId?: string; jtis: string[] };
}

/** A login session: the cookie's hash, the user and when they authenticated. */
export interface SessionRecord {
  id: string;
  /** The `sid` of OIDC Front-/Back-Channel Logout, put in id tokens (never the cookie value). */
  sid: string;
  sub: string;
  authTime: number;
  expiresAt: number;
}

/** A refresh token (opaque, stored hashed), one link of a rotation family (RFC 9700 §4.14.2). */
export interface RefreshRecord {
  id: string;
  familyId: string;
  clientId: string;
  sub: string;
  scope: string;
  audience: string;
  authTime: number;
  sid: string | undefined;
  expiresAt: number;
  /** Set when it was rotated: presenting it again is reuse, and revokes the family. */
  usedAt?: number;
}

/**
 * What `remember` keeps: a consumed client-assertion jti (RFC 7523 §3 replay), a revoked access
 * token jti (RFC 7009), a revoked refresh family.
 */
export type MarkKind = 'assertion' | 'revoked_jti' | 'revoked_family';

/**
 * A failure counter of the limiter (limiter.ts): how many failures in a row for one key (a
 * username, an address, a client_id, stored under its SHA-256 so a copy lists nobody) and when
 * the last one happened; the limiter derives the lock from these two.
 */
export interface FailureRecord {
  failures: number;
  /** Epoch ms of the last failure counted. */
  lastFailureAt: number;
  expiresAt: number;
}

/** The provider's state. Implementations make each method atomic with respect to the others. */
export interface OidcStore {
  saveCode(record: CodeRecord): Promise<void>;
  /** Marks a code used and answers the record as it was before (usedAt set when it was already used); undefined when unknown or expired. */
  useCode(id: string): Promise<CodeRecord | undefined>;
  /** Records what a code's redemption issued. */
  noteIssued(codeId: string, issued: { familyId?: string; jtis: string[] }): Promise<void>;

  saveSession(record: SessionRecord): Promise<void>;
  getSession(id: string): Promise<SessionRecord | undefined>;
  deleteSession(id: string): Promise<void>;

  saveRefresh(record: RefreshRecord): Promise<void>;
  getRefresh(id: string): Promise<RefreshRecord | undefined>;
  /** Marks a refresh token used and answers it as it was before; undefined when unknown or expired. */
  useRefresh(id: string): Promise<RefreshRecord | undefined>;

  /** Remembers `value` of `kind` until `expiresAt`; false when it was already remembered. */
  remember(kind: MarkKind, value: string, expiresAt: number): Promise<boolean>;
  isRemembered(kind: MarkKind, value: string): Promise<boolean>;

  /**
   * Counts one failure for `key` at the injected clock, in one atomic step: a missing or
   * expired counter starts again at 1; the counter then lives until `expiresAt`. Answers it as
   * it is after this failure, so of racing failures on any replicas each sees its own count.
   */
  countFailure(key: string, expiresAt: number): Promise<FailureRecord>;
  /** The live counter of `key`; undefined when there is none or it expired. */
  getFailures(key: string): Promise<FailureRecord | undefined>;
  /** Forgets the counter of `key` (after a success). */
  clearFailures(key: string): Promise<void>;
}

interface StateFile {
  format: 'jwt-factory-oidc/1';
  codes: Record<string, CodeRecord>;
  sessions: Record<string, SessionRecord>;
  refresh: Record<string, RefreshRecord>;
  marks: Record<string, number>;
  /** Failure counters in the order of their last failure (oldest first), so the oldest is dropped first. */
  failures: Record<string, FailureRecord>;
}

const emptyState = (): StateFile => ({ format: 'jwt-factory-oidc/1', codes: {}, sessions: {}, refresh: {}, marks: {}, failures: {} });

/**
 * The most failure counters the file keeps by default: it is rewritten on every change, so a
 * flood of made-up usernames must not grow it without bound. The counter whose last failure is
 * oldest goes first (each address is locked after its own failures, so one caller cannot flood it).
 */
const MAX_FAILURE_COUNTERS = 10_000;

/**
 * The file store: one JSON file (`<dir>/state.json`, mode 0600, written atomically) read once
 * and rewritten after each change, operations serialized in this process. One process only:
 * the factory refuses OIDC_CONFIG with WORKERS > 1 for this reason.
 */
export function createFileOidcStore(options: { dir: string; clock: Clock; maxFailureCounters?: number }): OidcStore {
  const file = path.join(options.dir, 'state.json');
  const maxFailureCounters = options.maxFailureCounters ?? MAX_FAILURE_COUNTERS;
  let state: StateFile | undefined;
  let queue: Promise<unknown> = Promise.resolve();

  const now = () => options.clock().getTime();

  async function load(): Promise<StateFile> {
    if (state) return state;
    const text = await readIfExists(file);
    if (text === undefined) return (state = emptyState());
    const parsed = JSON.parse(text) as Partial<StateFile>;
    if (parsed.format !== 'jwt-factory-oidc/1') throw new Error(`${file} is not a jwt-factory OIDC state file`);
    return (state = { ...emptyState(), ...parsed } as StateFile);
  }

  /** Drops every expired record (called before each write, so the file never grows with dead state). */
  function sweep(s: StateFile): void {
    const t = now();
    for (const table of [s.codes, s.sessions, s.refresh, s.failures] as Array<Record<string, { expiresAt: number }>>) {
      for (const [id, record] of Object.entries(table)) if (record.expiresAt <= t) delete table[id];
    }
    for (const [id, expiresAt] of Object.entries(s.marks)) if (expiresAt <= t) delete s.marks[id];
  }

  /** Runs one operation after the previous one; `write` persists the state afterwards. */
  function run<T>(task: (s: StateFile) => T, write: boolean): Promise<T> {
    const next = queue.then(async () => {
      const s = await load();
      const result = task(s);
      if (write) {
        sweep(s);
        await writeFileAtomic(file, `${JSON.stringify(s)}\n`);
      }
      return result;
    });
    queue = next.catch(() => undefined);
    return next;
  }

  const live = <T extends { expiresAt: number }>(record: T | undefined): T | undefined => (record && record.expiresAt > now() ? structuredClone(record) : undefined);
  const markKey = (kind: MarkKind, value: string) => `${kind}:${value}`;

  return {
    saveCode: (record) => run((s) => void (s.codes[record.id] = structuredClone(record)), true),
    useCode: (id) =>
      run((s) => {
        const before = live(s.codes[id]);
        if (before && before.usedAt === undefined) s.codes[id]!.usedAt = now();
        return before;
      }, true),
    noteIssued: (codeId, issued) =>
      run((s) => {
        const record = s.codes[codeId];
        if (record) record.issued = structuredClone(issued);
      }, true),
    saveSession: (record) => run((s) => void (s.sessions[record.id] = structuredClone(record)), true),
    getSession: (id) => run((s) => live(s.sessions[id]), false),
    deleteSession: (id) => run((s) => void delete s.sessions[id], true),
    saveRefresh: (record) => run((s) => void (s.refresh[record.id] = structuredClone(record)), true),
    getRefresh: (id) => run((s) => live(s.refresh[id]), false),
    useRefresh: (id) =>
      run((s) => {
        const before = live(s.refresh[id]);
        if (before && before.usedAt === undefined) s.refresh[id]!.usedAt = now();
        return before;
      }, true),
    remember: (kind, value, expiresAt) =>
      run((s) => {
        const key = markKey(kind, value);
        const known = s.marks[key];
        if (known !== undefined && known > now()) return false;
        s.marks[key] = expiresAt;
        return true;
      }, true),
    isRemembered: (kind, value) =>
      run((s) => {
        const known = s.marks[markKey(kind, value)];
        return known !== undefined && known > now();
      }, false),
    countFailure: (key, expiresAt) =>
      run((s) => {
        const before = live(s.failures[key]);
        const record: FailureRecord = { failures: (before?.failures ?? 0) + 1, lastFailureAt: now(), expiresAt };
        // Re-inserted at the end: the object keeps the order of last failures.
        delete s.failures[key];
        s.failures[key] = record;
        const keys = Object.keys(s.failures);
        for (const old of keys.slice(0, Math.max(0, keys.length - maxFailureCounters))) delete s.failures[old];
        return { ...record };
      }, true),
    getFailures: (key) => run((s) => live(s.failures[key]), false),
    // Nothing to forget, nothing to write: a success with no failures before it leaves the file alone.
    clearFailures: async (key) => {
      if (await run((s) => key in s.failures, false)) await run((s) => void delete s.failures[key], true);
    },
  };
}
