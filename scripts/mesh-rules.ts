import { readFile, stat } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { activeVersions } from '../jwt-factory/keys.js';
import { createKeyStore } from '../jwt-factory/keystore.js';
import { silentLogger } from '../lib/logger.js';
import {
  DEFAULT_ISSUER,
  DEFAULT_NAMESPACE,
  MeshRulesError,
  buildMeshRules,
  factoryClusterUrl,
  keyJwksUrl,
  validateOptions,
  publicJwks,
  type MeshRulesOptions,
} from '../mesh/istio/rules.js';
import { renderYaml } from '../lib/k8s.js';

/**
 * `npm run mesh-rules -- --key servicea --audience serviceb [...]` prints an Istio
 * RequestAuthentication + AuthorizationPolicy per receiving workload, consistent with the
 * factory's settings. With --inline-jwks / --jwks-file the public keys are embedded as `jwks`,
 * so the rule needs no JWKS fetch (see the README's jwksUri trap for why that can matter under STRICT mTLS).
 */

export const USAGE = `Usage: npm run mesh-rules -- --key <keyId> --audience <aud> [options]

Prints Istio RequestAuthentication + AuthorizationPolicy YAML that lets the caller <keyId>
(its factory key, its token's sub and its service account) reach each --audience workload
with a valid factory token and its own mTLS identity.

  --key <keyId>          factory keyId of the caller (required)
  --audience <aud>       accepted aud; repeat for several (required). Without --workload each
                         audience is also a workload (pods labelled app=<aud>): one pair each
  --workload <name>      one receiving workload that accepts every --audience
  --issuer <iss>         token issuer, the factory's ISSUER (default ${DEFAULT_ISSUER})
  --namespace <ns>       namespace of the rules and the service accounts (default ${DEFAULT_NAMESPACE})
  --factory-url <url>    factory base URL (default ${factoryClusterUrl(DEFAULT_NAMESPACE)}):
                         the jwksUri, or where --inline-jwks fetches /keys/<key>/jwks.json
  --port <n>             allow only this container port (the workload's HTTP port)
  --user-key <keyId>     the factory's OIDC key (OIDC_KEY_ID): its user tokens verify in the same
                         rule, whose jwksUri names both keys
  --user-audience <aud>  with --user-key: a user token's aud to accept too; repeat for several
  --inline-jwks          embed the key's public JWKS instead of a jwksUri
  --keys-dir <dir>       with --inline-jwks: read the factory's key files from <dir> instead of fetching
  --jwks-file <file>     embed the public keys of this JWKS JSON file (implies --inline-jwks)
  --help                 this text

Exit status: 0 printed, 2 bad flags, 1 the keys could not be read or fetched.`;

/** What the command line asks for. */
export interface MeshRulesRequest {
  options: Omit<MeshRulesOptions, 'jwks'>;
  jwksFrom: { kind: 'none' } | { kind: 'fetch'; url: string } | { kind: 'dir'; dir: string } | { kind: 'file'; file: string };
}

/** Parses argv (without node and script) into a request, or 'help'; throws MeshRulesError for bad flags. */
export function parseMeshRulesArgs(argv: string[]): MeshRulesRequest | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        key: { type: 'string' },
        audience: { type: 'string', multiple: true },
        workload: { type: 'string' },
        issuer: { type: 'string' },
        namespace: { type: 'string' },
        'factory-url': { type: 'string' },
        port: { type: 'string' },
        'user-key': { type: 'string' },
        'user-audience': { type: 'string', multiple: true },
        'inline-jwks': { type: 'boolean' },
        'keys-dir': { type: 'string' },
        'jwks-file': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    // parseArgs names the flag ("Unknown option '--audiance'", "Option '--key <value>' argument missing").
    throw new MeshRulesError((err as Error).message.split('. ')[0]!.replace(/\.$/, ''));
  }
  if (values.help) return 'help';
  if (values.key === undefined) throw new MeshRulesError('--key is required');
  if (values['keys-dir'] !== undefined && !values['inline-jwks']) throw new MeshRulesError('--keys-dir only goes with --inline-jwks');
  if (values['keys-dir'] !== undefined && values['jwks-file'] !== undefined) throw new MeshRulesError('give either --keys-dir or --jwks-file, not both');
  let port: number | undefined;
  if (values.port !== undefined) {
    port = Number(values.port);
    if (!/^\d+$/.test(values.port)) throw new MeshRulesError(`--port "${values.port}" is not a port number`);
  }
  const options: MeshRulesRequest['options'] = {
    key: values.key,
    audiences: values.audience ?? [],
    workload: values.workload,
    issuer: values.issuer,
    namespace: values.namespace,
    factoryUrl: values['factory-url'],
    port,
    ...(values['user-key'] !== undefined ? { userKey: values['user-key'], userAudiences: values['user-audience'] ?? [] } : {}),
  };
  // Validate every flag now, before any file is read or URL fetched.
  const { factoryUrl } = validateOptions(options);
  const jwksFrom: MeshRulesRequest['jwksFrom'] =
    values['jwks-file'] !== undefined
      ? { kind: 'file', file: values['jwks-file'] }
      : values['keys-dir'] !== undefined
        ? { kind: 'dir', dir: values['keys-dir'] }
        : values['inline-jwks']
          ? { kind: 'fetch', url: keyJwksUrl(factoryUrl, options.key) }
          : { kind: 'none' };
  return { options, jwksFrom };
}

/** Raised when keys cannot be read or fetched (exit status 1, unlike a usage error). */
export class KeySourceError extends Error {}

/** Reads the key's active public keys with the factory's own key store loader. */
async function jwksFromKeysDir(dir: string, key: string): Promise<unknown> {
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory()) throw new KeySourceError(`--keys-dir ${dir} is not a directory`);
  const now = new Date();
  // get() reads just this key's file: no need to load (and check) every key of the folder.
  const store = createKeyStore({ dir, clock: () => now, logger: silentLogger(), retireAfterSeconds: 0 });
  const entry = await store.get(key);
  if (!entry) throw new KeySourceError(`${dir} holds no readable key "${key}" (create it with the factory first)`);
  const keys = activeVersions(entry, now).map((v) => v.publicJwk);
  if (keys.some((k) => k === undefined)) throw new KeySourceError(`key "${key}" is symmetric (${entry.alg}): it has no public key to put in a mesh rule`);
  return { keys };
}

async function fetchJwks(url: string): Promise<unknown> {
  let answer: Response;
  try {
    answer = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    throw new KeySourceError(`cannot fetch ${url}: ${(err as Error).message}${cause ? ` (${cause})` : ''}`);
  }
  if (answer.status !== 200) throw new KeySourceError(`${url} answered ${answer.status}`);
  try {
    return await answer.json();
  } catch {
    throw new KeySourceError(`${url} did not answer JSON`);
  }
}

async function readJwksFile(file: string): Promise<unknown> {
  const text = await readFile(file, 'utf8').catch((err: Error) => {
    throw new KeySourceError(`cannot read --jwks-file ${file}: ${err.message}`);
  });
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new KeySourceError(`--jwks-file ${file} is not JSON`);
  }
}

/** Runs a parsed request: gets the public keys when asked, and returns the YAML to print. */
export async function renderMeshRules(request: MeshRulesRequest): Promise<string> {
  const { options, jwksFrom } = request;
  let raw: unknown;
  if (jwksFrom.kind === 'fetch') raw = await fetchJwks(jwksFrom.url);
  else if (jwksFrom.kind === 'dir') raw = await jwksFromKeysDir(jwksFrom.dir, options.key);
  else if (jwksFrom.kind === 'file') raw = await readJwksFile(jwksFrom.file);
  let jwks: ReturnType<typeof publicJwks> | undefined;
  try {
    jwks = raw === undefined ? undefined : publicJwks(raw);
  } catch (err) {
    // Flags were fine; the keys we were given are not usable.
    throw new KeySourceError(`the public keys cannot go into a mesh rule: ${(err as Error).message}`);
  }
  const objects = buildMeshRules({ ...options, jwks });
  const header = [
    `Generated by npm run mesh-rules: caller ${options.key}, audiences ${options.audiences.join(', ')}.`,
    raw === undefined ? 'Keys from jwksUri (see the README on STRICT mTLS and who fetches it).' : 'Public keys inlined: regenerate after every key rotation.',
  ].join('\n');
  return renderYaml(objects, header);
}

/** Where a command writes: stdout carries the YAML, stderr the messages. */
export interface CommandIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

/** Runs the command; resolves with its exit status (0 printed, 2 bad flags, 1 input problem). */
export async function runCommand(argv: string[], io: CommandIo): Promise<number> {
  try {
    const request = parseMeshRulesArgs(argv);
    if (request === 'help') {
      io.out(`${USAGE}\n`);
      return 0;
    }
    io.out(await renderMeshRules(request));
    return 0;
  } catch (err) {
    if (err instanceof MeshRulesError) {
      io.err(`mesh-rules: ${err.message}\nRun npm run mesh-rules -- --help for the flags.\n`);
      return 2;
    }
    if (err instanceof KeySourceError) {
      io.err(`mesh-rules: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runCommand(process.argv.slice(2), { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) });
}
