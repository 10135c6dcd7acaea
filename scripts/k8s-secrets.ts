import { spawnSync } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { SERVICE_NAMES } from '../app/config.js';
import { createKeyStore, keyIdOfFile } from '../jwt-factory/keystore.js';
import { certificatePaths } from '../lib/certs.js';
import { silentLogger } from '../lib/logger.js';
import { DNS_LABEL, renderYaml } from '../lib/k8s.js';
import { DEFAULT_NAMESPACE } from '../lib/suite.js';
import type { CommandIo } from './mesh-rules.js';

/**
 * `npm run k8s-secrets` turns the local key store and certificates into the Secrets the k8s/
 * manifests mount: `jwt-factory-keys` (every key file, checked with the factory's own loader) and
 * one `<service>-tls` per service (the CA certificate and that service's pair only, so no pod
 * holds another service's private key). It prints the YAML on stdout, or with --apply pipes it to
 * `kubectl apply -f -`. Key material goes nowhere else: stderr names files only.
 */

export const USAGE = `Usage: npm run k8s-secrets -- [--keys-dir keys] [--certs-dir certs] [--namespace ${DEFAULT_NAMESPACE}] [--apply]

Prints the Secrets the k8s/ manifests mount, as YAML on stdout:
  jwt-factory-keys      every key file of --keys-dir (the factory's <keyId>.json, or the
                        original <keyId>-private.pem), each read with the factory's loader first
  servicea-tls, serviceb-tls, servicec-tls
                        ca.pem plus <service>.pem and <service>-key.pem from --certs-dir
                        (never ca-key.pem: the CA's private key stays on your machine)

  --keys-dir <dir>      default keys
  --certs-dir <dir>     default certs (npm run certs makes it)
  --namespace <ns>      default ${DEFAULT_NAMESPACE}
  --apply               run kubectl apply -f - instead of printing (kubectl must be on PATH)
  --help                this text

The YAML holds private keys: pipe it to kubectl or a sealed-secrets tool, do not commit it.`;

/** Kubernetes refuses a Secret larger than 1 MiB. */
const SECRET_LIMIT = 1024 * 1024;

/** A usage (bad flag, exit 2) or input (exit 1) problem, told in one sentence. */
export class SecretsError extends Error {
  constructor(
    message: string,
    readonly usage = false,
  ) {
    super(message);
  }
}

export interface SecretsOptions {
  keysDir: string;
  certsDir: string;
  namespace: string;
}

interface SecretObject {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  type: 'Opaque';
  data: Record<string, string>;
}

function secret(name: string, namespace: string, files: Map<string, Buffer>): SecretObject {
  const data: Record<string, string> = {};
  let size = 0;
  for (const [file, content] of [...files].sort(([a], [b]) => (a < b ? -1 : 1))) {
    data[file] = content.toString('base64');
    size += content.length;
  }
  if (size > SECRET_LIMIT) throw new SecretsError(`${name} would hold ${size} bytes; Kubernetes allows 1 MiB per Secret`);
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'jwt-suite' } }, type: 'Opaque', data };
}

async function isDirectory(dir: string): Promise<boolean> {
  return (await stat(dir).catch(() => undefined))?.isDirectory() ?? false;
}

/** The factory's key files, after its own loader read every one of them. */
async function keyFiles(dir: string): Promise<{ files: Map<string, Buffer>; keyIds: string[] }> {
  if (!(await isDirectory(dir))) throw new SecretsError(`--keys-dir ${dir} is not a directory (start the factory once, or create keys with POST /keys/<keyId>)`);
  const store = createKeyStore({ dir, clock: () => new Date(), logger: silentLogger(), retireAfterSeconds: 0 });
  const { skipped } = await store.load();
  if (skipped.length > 0) throw new SecretsError(`the factory cannot read ${skipped.join(', ')} in ${dir}: fix or remove before packaging`);
  const keyIds = store.list();
  if (keyIds.length === 0) throw new SecretsError(`${dir} holds no key: the factory in the cluster cannot create keys (its key directory is read-only)`);
  const loaded = new Set(keyIds);
  const files = new Map<string, Buffer>();
  for (const name of await readdir(dir)) {
    const keyId = keyIdOfFile(name);
    if (keyId !== undefined && loaded.has(keyId)) files.set(name, await readFile(path.join(dir, name)));
  }
  return { files, keyIds };
}

/** ca.pem and one service's certificate and key. */
async function tlsFiles(dir: string, service: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const { caPath, certPath, keyPath } = certificatePaths(dir, service);
  for (const file of [caPath, certPath, keyPath]) {
    const content = await readFile(file).catch(() => undefined);
    if (!content) throw new SecretsError(`${file} is missing: run npm run certs first`);
    files.set(path.basename(file), content);
  }
  return files;
}

/** Builds the Secrets and a one-line summary per Secret naming files only. */
export async function buildSecrets(options: SecretsOptions): Promise<{ objects: SecretObject[]; summary: string[] }> {
  const keys = await keyFiles(options.keysDir);
  const objects = [secret('jwt-factory-keys', options.namespace, keys.files)];
  const summary = [`jwt-factory-keys: keys ${keys.keyIds.join(', ')}`];
  const missing = SERVICE_NAMES.filter((s) => !keys.keyIds.includes(s));
  if (missing.length > 0) summary.push(`note: no factory key for ${missing.join(', ')}: /issueToken/<keyId> for it will fail in the cluster`);
  for (const service of SERVICE_NAMES) {
    const files = await tlsFiles(options.certsDir, service);
    objects.push(secret(`${service}-tls`, options.namespace, files));
    summary.push(`${service}-tls: ${[...files.keys()].join(', ')}`);
  }
  return { objects, summary };
}

/** Parses argv; 'help' for --help; throws SecretsError naming a bad flag. */
export function parseSecretsArgs(argv: string[]): (SecretsOptions & { apply: boolean }) | 'help' {
  try {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        'keys-dir': { type: 'string' },
        'certs-dir': { type: 'string' },
        namespace: { type: 'string' },
        apply: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) return 'help';
    const namespace = values.namespace ?? DEFAULT_NAMESPACE;
    if (!DNS_LABEL.test(namespace)) throw new SecretsError(`--namespace "${namespace}" is not a Kubernetes namespace name`, true);
    return { keysDir: values['keys-dir'] ?? 'keys', certsDir: values['certs-dir'] ?? 'certs', namespace, apply: values.apply ?? false };
  } catch (err) {
    if (err instanceof SecretsError) throw err;
    throw new SecretsError((err as Error).message.split('. ')[0]!.replace(/\.$/, ''), true);
  }
}

/**
 * Runs the command; resolves with its exit status (0 done, 2 bad flags, 1 input problem, or
 * kubectl's own status). `kubectl` is the program --apply runs.
 */
export async function runCommand(argv: string[], io: CommandIo, kubectl = 'kubectl'): Promise<number> {
  try {
    const options = parseSecretsArgs(argv);
    if (options === 'help') {
      io.out(`${USAGE}\n`);
      return 0;
    }
    const { objects, summary } = await buildSecrets(options);
    for (const line of summary) io.err(`k8s-secrets: ${line}\n`);
    const yaml = renderYaml(objects, 'Generated by npm run k8s-secrets. Holds private keys: never commit this output.');
    if (!options.apply) {
      io.out(yaml);
      return 0;
    }
    // The YAML goes to kubectl's stdin only; kubectl answers with names ("secret/x configured").
    const result = spawnSync(kubectl, ['apply', '-f', '-'], { input: yaml, encoding: 'utf8' });
    if (result.error) throw new SecretsError(`cannot run ${kubectl} (${(result.error as NodeJS.ErrnoException).code}): install it, or drop --apply and pipe the output`);
    io.out(result.stdout);
    io.err(result.stderr);
    return result.status ?? 1;
  } catch (err) {
    if (err instanceof SecretsError) {
      io.err(`k8s-secrets: ${err.message}\n`);
      return err.usage ? 2 : 1;
    }
    throw err;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runCommand(process.argv.slice(2), { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) });
}
