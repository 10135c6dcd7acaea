import { createHash } from 'node:crypto';
import { statSync, watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError, parseJwksFile } from './args.js';
import { parsePolicyText, suppliedJwks, type MeshPolicy } from './istio/policies.js';

/**
 * The impure edges of the engine, shared by the command, the HTTP router and the gateway:
 * reading policy files and fetching JWKS over the network (as istiod does for `jwksUri`, with a
 * timeout). The engine itself never touches the disk or the network.
 */

const POLICY_EXT = new Set(['.yaml', '.yml', '.json']);

async function policyFiles(target: string): Promise<string[]> {
  const info = await stat(target);
  return info.isDirectory() ? (await readdir(target)).filter((f) => POLICY_EXT.has(path.extname(f))).sort().map((f) => path.join(target, f)) : [target];
}

interface InputFile {
  file: string;
  text: string;
}

/** One policy file, or every .yaml/.yml/.json file of a directory (sorted by name), read once. */
async function readPolicyFiles(target: string): Promise<InputFile[]> {
  return Promise.all((await policyFiles(target)).map(async (file) => ({ file, text: await readFile(file, 'utf8') })));
}

async function readJwksInput(file: string): Promise<InputFile> {
  try {
    return { file, text: await readFile(file, 'utf8') };
  } catch (err) {
    throw new UsageError(`--jwks-file ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** sha256 over input files, to tell which inputs a reload saw. */
function digestOf(inputs: readonly InputFile[]): string {
  const hash = createHash('sha256');
  for (const { file, text } of inputs) hash.update(`${path.basename(file)}\0`).update(text).update('\0');
  return hash.digest('hex').slice(0, 16);
}

const parsePolicies = (inputs: readonly InputFile[]): MeshPolicy[] => inputs.flatMap(({ file, text }) => parsePolicyText(text, file));

/** Reads one policy file, or every .yaml/.yml/.json file of a directory (sorted by name). */
export async function loadPolicyPath(target: string): Promise<MeshPolicy[]> {
  return parsePolicies(await readPolicyFiles(target));
}

/** The digest loadInputs reports for these files (sha256 over the policy files, then the JWKS file). */
export async function inputDigest(policyPath: string, jwksFile?: string): Promise<string> {
  return digestOf([...(await readPolicyFiles(policyPath)), ...(jwksFile ? [await readJwksInput(jwksFile)] : [])]);
}

/**
 * What the command and the gateway load: the policies, the supplied JWKS (`--jwks-file`), the
 * JWKS fetched for the other rules, and the digest of exactly the bytes that were parsed (an
 * editor saving in between cannot make the two disagree).
 */
export async function loadInputs(policyPath: string, jwksFile: string | undefined, options: ResolveOptions = {}): Promise<ResolvedJwks & { policies: MeshPolicy[]; digest: string }> {
  const policyInputs = await readPolicyFiles(policyPath);
  const jwksInput = jwksFile ? await readJwksInput(jwksFile) : undefined;
  const policies = parsePolicies(policyInputs);
  const supplied = jwksInput ? parseJwksFile(jwksInput.text, jwksInput.file) : {};
  const resolved = await resolveJwks(policies, supplied, options);
  return { ...resolved, policies, digest: digestOf([...policyInputs, ...(jwksInput ? [jwksInput] : [])]) };
}

/**
 * Calls `onChange` (debounced) when a watched file or directory changes. Parent directories are
 * watched, so editors that replace a file by renaming are seen too. Returns a closer.
 */
export function watchInputs(targets: string[], onChange: () => void, debounceMs = 150): () => void {
  let timer: NodeJS.Timeout | undefined;
  const fire = () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, debounceMs);
  };
  const watchers: FSWatcher[] = [];
  for (const target of targets) {
    const isDir = statSync(target, { throwIfNoEntry: false })?.isDirectory() ?? false;
    const dir = isDir ? target : path.dirname(target);
    const base = path.basename(target);
    watchers.push(watch(dir, (_event, name) => (isDir || name === base ? fire() : undefined)));
  }
  return () => {
    clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}

/** istiod's per-rule timeout is 5 s unless the jwtRule sets `timeout` (policy_applier.go). */
const DEFAULT_FETCH_TIMEOUT_MS = 5000;

function parseDuration(value: string | undefined): number | undefined {
  const m = value ? /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(value) : null;
  if (!m) return undefined;
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

export type Fetcher = (url: string, init: { signal: AbortSignal; headers: Record<string, string> }) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

export interface ResolveOptions {
  /** Upper bound for one fetch, in ms (the rule's own timeout applies when smaller). */
  timeoutMs?: number;
  fetch?: Fetcher;
}

export interface ResolvedJwks {
  /** JWKS keyed by jwksUri (or by issuer when found by discovery), ready for evaluate({ jwks }). */
  jwks: Record<string, unknown>;
  /** One sentence per fetch, successful or not. */
  notes: string[];
}

async function getJson(url: string, timeoutMs: number, fetcher: Fetcher): Promise<unknown> {
  const res = await fetcher(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.json();
}

/**
 * Fetches the JWKS of every jwtRule that has neither inline `jwks` nor a supplied document:
 * its `jwksUri`, else OpenID discovery on the issuer. A failed fetch is reported, not thrown:
 * the engine then does what the sidecar does when istiod cannot fetch (a fake JWKS).
 */
export async function resolveJwks(policies: readonly MeshPolicy[], supplied: Record<string, unknown> = {}, options: ResolveOptions = {}): Promise<ResolvedJwks> {
  const fetcher = options.fetch ?? (fetch as unknown as Fetcher);
  const jwks: Record<string, unknown> = { ...supplied };
  const notes: string[] = [];
  const attempted = new Set<string>();
  for (const p of policies) {
    if (p.kind !== 'RequestAuthentication') continue;
    for (const rule of p.jwtRules) {
      if (rule.jwks !== undefined) continue;
      if (suppliedJwks(rule, jwks) !== undefined) continue;
      const target = rule.jwksUri ?? `issuer:${rule.issuer ?? ''}`;
      if (attempted.has(target)) continue;
      attempted.add(target);
      const timeoutMs = Math.min(parseDuration(rule.timeout) ?? DEFAULT_FETCH_TIMEOUT_MS, options.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS);
      let uri = rule.jwksUri;
      try {
        if (!uri) {
          const discovery = `${(rule.issuer ?? '').replace(/\/$/, '')}/.well-known/openid-configuration`;
          const doc = (await getJson(discovery, timeoutMs, fetcher)) as { jwks_uri?: unknown };
          if (typeof doc?.jwks_uri !== 'string') throw new Error(`${discovery} has no jwks_uri`);
          uri = doc.jwks_uri;
        }
        const key = rule.jwksUri ?? rule.issuer!;
        jwks[key] = await getJson(uri, timeoutMs, fetcher);
        notes.push(`fetched the JWKS for issuer ${rule.issuer ?? '(any)'} from ${uri}`);
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause?.code;
        const reason = err instanceof Error && err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : err instanceof Error ? `${err.message}${cause ? `: ${cause}` : ''}` : String(err);
        notes.push(`could not fetch the JWKS for issuer ${rule.issuer ?? '(any)'} from ${uri ?? 'OpenID discovery'} (${reason})`);
      }
    }
  }
  return { jwks, notes };
}
