import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { UsageError, parseIstio, parseNow, parseWorkload } from './args.js';
import { DEFAULT_ISTIO, ISTIO_RANGE } from './istio/releases.js';
import { evaluate, type Verdict } from './evaluate.js';
import { PolicyError } from './istio/policies.js';
import { loadInputs } from './sources.js';

const HELP = `Usage: npm run mesh -- explain --policies <dir|file> [options]

Answers "would Istio let this request through, and why not?" for the workload's sidecar,
from RequestAuthentication and AuthorizationPolicy YAML, without a cluster.

  --policies <dir|file>     YAML/JSON with the policies (other kinds are ignored)    (required)
  --token <jwt>             sent as "Authorization: Bearer <jwt>"
  --token-file <file>       the same, read from a file (keeps the token out of shell history)
  --path <path>             request path, may carry a query string                    (default /)
  --method <m>              request method                                            (default GET)
  --header 'name: value'    a request header, repeatable
  --host <host>             the Host header                                            (default: the app label, else localhost)
  --port <n>                destination port (for AuthorizationPolicy ports)
  --source-principal <id>   the caller's mTLS identity, e.g. cluster.local/ns/jwt-suite/sa/servicea
  --workload <k=v>          a label of the workload receiving the request, repeatable (default: all policies apply)
  --namespace <ns>          the workload's namespace                                   (default "default")
  --root-namespace <ns>     Istio's root namespace                                     (default istio-system)
  --jwks-file <file>        a JWKS, or a map of JWKS keyed by jwksUri or issuer (else jwksUri is fetched)
  --fetch-timeout <ms>      bound of one JWKS fetch                                    (default 5000)
  --custom-authz allow|deny what a CUSTOM (ext_authz) provider would answer           (default allow)
  --now <ISO>               decide as if at this instant                               (default now)
  --istio <version>         the Istio release to model, ${ISTIO_RANGE} (e.g. 1.28, 1.29.1) (default ${DEFAULT_ISTIO})
  --json                    print the verdict as JSON
  --help                    this text

Exit status: 0 the request would reach the workload, 1 the mesh refuses it (401/403),
2 bad usage or an invalid policy file.
`;

interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
}

function parse(argv: string[]): Parsed {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      policies: { type: 'string' },
      token: { type: 'string' },
      'token-file': { type: 'string' },
      path: { type: 'string', default: '/' },
      method: { type: 'string', default: 'GET' },
      header: { type: 'string', multiple: true },
      host: { type: 'string' },
      port: { type: 'string' },
      'source-principal': { type: 'string' },
      workload: { type: 'string', multiple: true },
      namespace: { type: 'string' },
      'root-namespace': { type: 'string' },
      'jwks-file': { type: 'string' },
      'fetch-timeout': { type: 'string', default: '5000' },
      'custom-authz': { type: 'string' },
      now: { type: 'string' },
      istio: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) return { values };
  if (positionals[0] !== 'explain' || positionals.length > 1) throw new UsageError(positionals.length ? `unknown command "${positionals.join(' ')}"` : 'missing command "explain"');
  return { values };
}

/** A compact JWS (its header is base64url JSON, so it starts "ey"): never printed, wherever it travels. */
const JWT_LIKE = /ey[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g;

/** Renders a verdict the way a person reads it. */
function renderVerdict(v: Verdict): string {
  const lines = [
    `Verdict: ${v.status} ${v.status === 200 ? 'allowed: the request reaches the workload' : v.body || '(empty body)'}`,
    `Decided by: ${v.decidedBy}`,
    `Request principal: ${v.principal ?? '(none)'}`,
  ];
  if (v.responseHeaders['www-authenticate']) lines.push(`www-authenticate: ${v.responseHeaders['www-authenticate']}`);
  lines.push('', 'Why:', ...v.steps.map((s, i) => `  ${i + 1}. ${s}`));
  if (v.status === 200) {
    lines.push('', `Upstream receives: ${v.upstreamPath}`);
    for (const [k, val] of Object.entries(v.upstreamHeaders)) {
      for (const one of Array.isArray(val) ? val : [val]) lines.push(`  ${k}: ${one.replace(JWT_LIKE, '[token]')}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const str = (k: string) => values[k] as string | undefined;
  if (!str('policies')) throw new UsageError('--policies is required');
  if (str('token') && str('token-file')) throw new UsageError('use --token or --token-file, not both');
  const custom = str('custom-authz');
  if (custom !== undefined && custom !== 'allow' && custom !== 'deny') throw new UsageError('--custom-authz must be allow or deny');
  const port = str('port') === undefined ? undefined : Number(str('port'));
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new UsageError(`--port must be 0..65535, got "${str('port')}"`);
  const fetchTimeout = Number(str('fetch-timeout'));
  if (!Number.isFinite(fetchTimeout) || fetchTimeout <= 0) throw new UsageError('--fetch-timeout must be a positive number of ms');
  const workload = parseWorkload(values.workload as string[] | undefined, str('namespace'));
  const now = parseNow(str('now')) ?? new Date();
  const istio = parseIstio(str('istio'));
  const path = str('path')!;
  if (!path.startsWith('/')) throw new UsageError(`--path must start with /, got "${path}"`);

  const headers: Record<string, string[]> = {};
  for (const h of (values.header as string[] | undefined) ?? []) {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new UsageError(`--header expects "name: value", got "${h}"`);
    const name = h.slice(0, colon).trim().toLowerCase();
    (headers[name] ??= []).push(h.slice(colon + 1).trim());
  }
  const token = str('token') ?? (str('token-file') ? (await readFile(str('token-file')!, 'utf8')).trim() : undefined);
  if (token) (headers.authorization ??= []).push(`Bearer ${token}`);
  headers.host ??= [str('host') ?? workload?.labels.app ?? 'localhost'];

  const resolved = await loadInputs(str('policies')!, str('jwks-file'), { timeoutMs: fetchTimeout });
  const { policies } = resolved;
  const verdict = await evaluate({
    policies,
    request: { method: str('method')!, path, headers, port, sourcePrincipal: str('source-principal') },
    jwks: resolved.jwks,
    now,
    workload,
    rootNamespace: str('root-namespace'),
    customAuthz: custom as 'allow' | 'deny' | undefined,
    istio,
  });
  const full = { ...verdict, steps: [...resolved.notes, ...verdict.steps] };
  process.stdout.write(values.json ? `${JSON.stringify(full, null, 2).replace(JWT_LIKE, '[token]')}\n` : renderVerdict(full));
  return verdict.status === 200 ? 0 : 1;
}

run(process.argv.slice(2))
  .then((code) => process.exit(code))
  .catch((err: unknown) => {
    const code = (err as { code?: string }).code;
    const usage = err instanceof UsageError || code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`mesh: ${err instanceof Error ? err.message : String(err)}\n${usage ? `\n${HELP}` : ''}`);
    process.exit(usage || err instanceof PolicyError || code === 'ENOENT' ? 2 : 1);
  });
