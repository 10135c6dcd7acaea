import { parseArgs } from 'node:util';
import path from 'node:path';
import { DEFAULT_NAMESPACE, DEFAULT_SERVICES, ensureCertificates } from '../lib/certs.js';

/**
 * `npm run certs [-- --dir certs] [--services a,b] [--namespace ns]`: makes sure a local CA and
 * one server certificate per service exist, keeping whatever is still valid.
 */

const HELP = `Usage: npm run certs -- [--dir DIR] [--services LIST] [--namespace NS]

Creates (or keeps, when still valid) the suite's local CA and one TLS server certificate per
service, for localhost, 127.0.0.1, the service name and its Kubernetes DNS names.

  --dir DIR          folder for the files (default: certs)
  --services LIST    comma-separated services (default: ${DEFAULT_SERVICES.join(',')})
  --namespace NS     Kubernetes namespace in the DNS names (default: ${DEFAULT_NAMESPACE})
  -h, --help         this text

Files: ca.pem, ca-key.pem, <service>.pem, <service>-key.pem (private keys mode 0600).
A rerun keeps valid certificates and replaces missing, expiring (within 30 days),
mismatched or foreign-signed ones; a new CA re-issues every server certificate.`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        dir: { type: 'string', default: 'certs' },
        services: { type: 'string' },
        namespace: { type: 'string', default: DEFAULT_NAMESPACE },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`certs: ${(err as Error).message}\n\n${HELP}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const services = values.services ? values.services.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  const started = process.hrtime.bigint();
  const report = await ensureCertificates(path.resolve(values.dir), { services, namespace: values.namespace });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  for (const e of report.entries) {
    const why = e.reason && e.reason !== 'missing' ? ` (${e.reason})` : '';
    process.stdout.write(`${e.action.padEnd(8)} ${path.relative(process.cwd(), e.certPath).padEnd(28)} valid until ${e.notAfter.slice(0, 10)}${why}\n`);
  }
  process.stdout.write(`certificates ready in ${path.relative(process.cwd(), report.dir) || '.'} (${Math.round(ms)} ms); clients trust ${path.relative(process.cwd(), report.caPath)}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`certs: ${err.message}\n`);
    process.exit(1);
  },
);
