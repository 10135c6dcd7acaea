import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { SERVICE_NAMES } from '../app/config.js';
import { parseEncryptionKey } from '../jwt-factory/store/encryption.js';
import { certificatePaths } from '../lib/certs.js';
import { readIfExists, writeFileAtomic } from '../lib/files.js';
import { DNS_LABEL, renderYaml } from '../lib/k8s.js';
import { DEFAULT_NAMESPACE } from '../lib/suite.js';
import type { CommandIo } from './mesh-rules.js';

/**
 * `npm run k8s-secrets` makes the Secrets the k8s/ manifests mount: `jwt-factory-encryption-key`
 * (KEY_ENCRYPTION_KEY_FILE: 32 random bytes that seal every private key in PostgreSQL),
 * `jwt-factory-postgres` (the database password, for the StatefulSet and the factory), and one
 * `<service>-tls` per service (the CA certificate and that service's pair only, so no pod holds
 * another service's private key). The key and the password are made once and kept in
 * --secrets-dir: every later run packs the same ones, because a new encryption key would leave
 * every key in the database unreadable. It prints the YAML on stdout, or with --apply pipes it to
 * `kubectl apply -f -`. Secret material goes nowhere else: stderr names files only.
 */

export const USAGE = `Usage: npm run k8s-secrets -- [--secrets-dir cluster-secrets] [--certs-dir certs] [--namespace ${DEFAULT_NAMESPACE}] [--apply]

Prints the Secrets the k8s/ manifests mount, as YAML on stdout:
  jwt-factory-encryption-key   key: the factory's KEY_ENCRYPTION_KEY (32 random bytes, base64)
  jwt-factory-postgres         password: the key database's password
  servicea-tls, serviceb-tls, servicec-tls
                               ca.pem plus <service>.pem and <service>-key.pem from --certs-dir
                               (never ca-key.pem: the CA's private key stays on your machine)

  --secrets-dir <dir>   default cluster-secrets: key-encryption-key and postgres-password are
                        read from here, or made (mode 0600) on the first run; back them up
  --certs-dir <dir>     default certs (npm run certs makes it)
  --namespace <ns>      default ${DEFAULT_NAMESPACE}
  --apply               run kubectl apply -f - instead of printing (kubectl must be on PATH)
  --help                this text

The YAML holds secrets: pipe it to kubectl or a sealed-secrets tool, do not commit it.`;

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
  secretsDir: string;
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

/** The value kept in `file`, checked by `check`; made by `make` (and kept, mode 0600) when the file does not exist yet. */
async function kept(file: string, make: () => string, check: (text: string) => void, notes: string[]): Promise<string> {
  const existing = await readIfExists(file);
  if (existing !== undefined) {
    try {
      check(existing);
    } catch (err) {
      throw new SecretsError(`${file} ${(err as Error).message}: fix or remove it (a new encryption key cannot read the keys already in the database)`);
    }
    return existing.trim();
  }
  const value = make();
  try {
    await writeFileAtomic(file, `${value}\n`, { mode: 0o600, noClobber: true });
  } catch (err) {
    // Another run made it at the same moment: use that one.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return (await readFile(file, 'utf8')).trim();
    throw new SecretsError(`cannot write ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  notes.push(`made ${file}: back it up, it is the only copy`);
  return value;
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

/** The data key of each Secret, as the manifests mount or reference it. */
export const ENCRYPTION_KEY_SECRET = { name: 'jwt-factory-encryption-key', key: 'key' } as const;
export const POSTGRES_SECRET = { name: 'jwt-factory-postgres', key: 'password' } as const;

/** Builds the Secrets and a one-line summary per Secret naming files only. */
export async function buildSecrets(options: SecretsOptions): Promise<{ objects: SecretObject[]; summary: string[] }> {
  const summary: string[] = [];
  const encryptionFile = path.join(options.secretsDir, 'key-encryption-key');
  const passwordFile = path.join(options.secretsDir, 'postgres-password');
  const encryptionKey = await kept(encryptionFile, () => randomBytes(32).toString('base64'), parseEncryptionKey, summary);
  const password = await kept(
    passwordFile,
    // URL-safe, so it may also stand in a postgres:// URL.
    () => randomBytes(24).toString('base64url'),
    (text) => {
      if (!/^[\x21-\x7e]{16,}$/.test(text.trim())) throw new Error('must be one line of at least 16 visible characters');
    },
    summary,
  );
  const objects = [
    secret(ENCRYPTION_KEY_SECRET.name, options.namespace, new Map([[ENCRYPTION_KEY_SECRET.key, Buffer.from(encryptionKey)]])),
    secret(POSTGRES_SECRET.name, options.namespace, new Map([[POSTGRES_SECRET.key, Buffer.from(password)]])),
  ];
  summary.push(`${ENCRYPTION_KEY_SECRET.name}: ${ENCRYPTION_KEY_SECRET.key} from ${encryptionFile}`, `${POSTGRES_SECRET.name}: ${POSTGRES_SECRET.key} from ${passwordFile}`);
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
        'secrets-dir': { type: 'string' },
        'certs-dir': { type: 'string' },
        namespace: { type: 'string' },
        apply: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) return 'help';
    const namespace = values.namespace ?? DEFAULT_NAMESPACE;
    if (!DNS_LABEL.test(namespace)) throw new SecretsError(`--namespace "${namespace}" is not a Kubernetes namespace name`, true);
    return { secretsDir: values['secrets-dir'] ?? 'cluster-secrets', certsDir: values['certs-dir'] ?? 'certs', namespace, apply: values.apply ?? false };
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
    const yaml = renderYaml(objects, 'Generated by npm run k8s-secrets. Holds secrets and private keys: never commit this output.');
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
